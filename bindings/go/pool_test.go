//go:build cgo

package berth

import (
	"fmt"
	"slices"
	"testing"
)

func TestAdd_NewKeyIsInsertedExistingKeyIsUpdated(t *testing.T) {
	e := newEngine(t)
	inserted, err := e.Add("p", ready("a", "n1"))
	if err != nil || !inserted {
		t.Fatalf("first Add = %v, %v; want true, nil", inserted, err)
	}
	inserted, err = e.Add("p", unready("a", "n2"))
	if err != nil || inserted {
		t.Fatalf("second Add = %v, %v; want false, nil", inserted, err)
	}
	s, err := e.Stats("p")
	if err != nil {
		t.Fatal(err)
	}
	if s.Keys != 1 || s.ReadyKeys != 0 || s.ScheduledKeys != 1 || s.Nodes != 1 {
		t.Fatalf("Stats = %+v; want one unready key on one node", s)
	}
	h, ok, err := e.PopFIFO("p")
	if err != nil || !ok {
		t.Fatalf("PopFIFO = %v, %v", ok, err)
	}
	want := Key{Namespace: "ns", Name: "a", Node: "n2", Ready: false}
	if h.Key != want {
		t.Fatalf("PopFIFO key = %+v; want the updated values %+v", h.Key, want)
	}
}

func TestAdd_UpdateKeepsAge(t *testing.T) {
	e := newEngine(t)
	mustAdd(t, e, "p", ready("a", "n1"), ready("b", "n1"), ready("c", "n1"))
	before, err := e.Snapshot("p")
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, e, "p", unready("a", "n9")) // update, not re-insert
	after, err := e.Snapshot("p")
	if err != nil {
		t.Fatal(err)
	}
	wantNames(t, snapshotNames(t, e, "p"), "a", "b", "c")
	if before.Key(0).Seq != after.Key(0).Seq {
		t.Fatalf("seq of a changed on update: %d -> %d", before.Key(0).Seq, after.Key(0).Seq)
	}
	wantNames(t, popNames(t, e.PopFIFO, "p"), "a", "b", "c")
}

func TestAdd_SameNameInOtherNamespaceIsAnotherKey(t *testing.T) {
	e := newEngine(t)
	for _, ns := range []string{"", "x", "y"} {
		ins, err := e.Add("p", Key{Namespace: ns, Name: "a"})
		if err != nil || !ins {
			t.Fatalf("Add ns=%q = %v, %v; want inserted", ns, ins, err)
		}
	}
	s, err := e.Stats("p")
	if err != nil || s.Keys != 3 {
		t.Fatalf("Stats = %+v, %v; want 3 keys", s, err)
	}
}

func TestUpdate_PresentKeyChangesNodeAndReadyKeepsAge(t *testing.T) {
	e := newEngine(t)
	mustAdd(t, e, "p", ready("a", "n1"), ready("b", "n1"))
	before, _ := e.Snapshot("p")
	if ok, err := e.Update("p", unready("a", "n2")); err != nil || !ok {
		t.Fatalf("Update present = %v, %v; want true, nil", ok, err)
	}
	after, _ := e.Snapshot("p")
	got := after.Keys()
	if len(got) != 2 || got[0].Key != unready("a", "n2") || got[0].Seq != before.Key(0).Seq || got[1].Name != "b" {
		t.Fatalf("after Update snapshot = %+v; want a (n2, unready, same seq) then b", got)
	}
}

func TestUpdate_AbsentOrHandedOutKeyIsNotInserted(t *testing.T) {
	e := newEngine(t)
	mustAdd(t, e, "p", ready("a", "n1"), ready("b", "n1"))
	h, _, _ := e.PopFIFO("p") // a is claimed
	for _, k := range []Key{ready("a", "n1"), ready("never-added", "n1")} {
		if ok, err := e.Update("p", k); err != nil || ok {
			t.Fatalf("Update(%s) = %v, %v; want false, nil", k.Name, ok, err)
		}
	}
	wantNames(t, snapshotNames(t, e, "p"), "b")
	// The claimed key can still be put back: Update did not touch it.
	if restored, err := e.PutBack("p", h); err != nil || !restored {
		t.Fatalf("PutBack after Update of the claimed key = %v, %v; want true", restored, err)
	}
	// An absent pool is not an error, and is not created.
	if ok, err := e.Update("nope", ready("a", "n1")); err != nil || ok {
		t.Fatalf("Update on absent pool = %v, %v; want false, nil", ok, err)
	}
	_, err := e.Stats("nope")
	wantStatus(t, err, ErrNotFound)
}

func TestRemove_PresentKeyIsRemovedAbsentIsNotAnError(t *testing.T) {
	e := newEngine(t)
	mustAdd(t, e, "p", ready("a", "n1"), ready("b", "n1"))
	if ok, err := e.Remove("p", "ns", "a"); err != nil || !ok {
		t.Fatalf("Remove present = %v, %v; want true, nil", ok, err)
	}
	if ok, err := e.Remove("p", "ns", "a"); err != nil || ok {
		t.Fatalf("Remove again = %v, %v; want false, nil", ok, err)
	}
	if ok, err := e.Remove("p", "other-ns", "b"); err != nil || ok {
		t.Fatalf("Remove other namespace = %v, %v; want false, nil", ok, err)
	}
	if ok, err := e.Remove("no-such-pool", "ns", "b"); err != nil || ok {
		t.Fatalf("Remove from absent pool = %v, %v; want false, nil", ok, err)
	}
	wantNames(t, snapshotNames(t, e, "p"), "b")
}

func TestRemovePool_DropsPoolAndItsKeys(t *testing.T) {
	e := newEngine(t)
	mustAdd(t, e, "p", ready("a", "n1"))
	mustAdd(t, e, "q", ready("a", "n1"))
	if ok, err := e.RemovePool("p"); err != nil || !ok {
		t.Fatalf("RemovePool = %v, %v; want true, nil", ok, err)
	}
	if ok, err := e.RemovePool("p"); err != nil || ok {
		t.Fatalf("RemovePool again = %v, %v; want false, nil", ok, err)
	}
	_, err := e.Stats("p")
	wantStatus(t, err, ErrNotFound)
	_, _, err = e.PopFIFO("p")
	wantStatus(t, err, ErrNotFound)
	// Other pools are untouched, and an add creates the pool anew, empty.
	wantNames(t, snapshotNames(t, e, "q"), "a")
	mustAdd(t, e, "p", ready("z", "n1"))
	wantNames(t, snapshotNames(t, e, "p"), "z")
}

func TestPopFIFO_HandsOutOldestFirstReadyOrNot(t *testing.T) {
	e := newEngine(t)
	mustAdd(t, e, "p",
		unready("a", "n1"), ready("b", "n2"), Key{Name: "c"}, ready("d", "n2"), unready("e", ""))
	wantNames(t, popNames(t, e.PopFIFO, "p"), "a", "b", "c", "d", "e")
}

func TestPopFIFO_ReturnsKeyValuesAndIncreasingSeq(t *testing.T) {
	e := newEngine(t)
	k1 := Key{Namespace: "team-ä", Name: "sandbox-1", Node: "node-α", Ready: true}
	k2 := Key{Namespace: "", Name: "sandbox-2", Node: "", Ready: false}
	mustAdd(t, e, "p", k1, k2)
	h1, ok, err := e.PopFIFO("p")
	if err != nil || !ok || h1.Key != k1 {
		t.Fatalf("first PopFIFO = %+v, %v, %v; want %+v", h1, ok, err, k1)
	}
	h2, ok, err := e.PopFIFO("p")
	if err != nil || !ok || h2.Key != k2 {
		t.Fatalf("second PopFIFO = %+v, %v, %v; want %+v", h2, ok, err, k2)
	}
	if h1.Seq >= h2.Seq {
		t.Fatalf("seqs %d, %d: want older key to have the smaller seq", h1.Seq, h2.Seq)
	}
}

func TestPop_EmptyPoolReturnsNotOK(t *testing.T) {
	e := newEngine(t)
	mustAdd(t, e, "p", ready("a", "n1"))
	if _, err := e.Remove("p", "ns", "a"); err != nil {
		t.Fatal(err)
	}
	for name, pop := range map[string]popFunc{"PopFIFO": e.PopFIFO, "PopSpread": e.PopSpread} {
		h, ok, err := pop("p")
		if err != nil || ok || h != (HandedOut{}) {
			t.Errorf("%s on empty pool = %+v, %v, %v; want zero, false, nil", name, h, ok, err)
		}
	}
}

func TestPopSpread_NodeWithMostKeysWins(t *testing.T) {
	e := newEngine(t)
	// n1 holds the oldest key, but n2 holds more keys.
	mustAdd(t, e, "p", ready("a1", "n1"), ready("b1", "n2"), ready("b2", "n2"), ready("c1", "n3"))
	h, ok, err := e.PopSpread("p")
	if err != nil || !ok || h.Name != "b1" {
		t.Fatalf("PopSpread = %q, %v, %v; want b1 (oldest key of the fullest node)", h.Name, ok, err)
	}
}

func TestPopSpread_TieGoesToOldestNode(t *testing.T) {
	e := newEngine(t)
	// Ages: b1 < a1 < b2 < a2. Two keys on each node.
	mustAdd(t, e, "p", ready("b1", "nb"), ready("a1", "na"), ready("b2", "nb"), ready("a2", "na"))
	// 2:2 tie -> nb (holds b1, the oldest); then na has more (2:1);
	// then 1:1 tie -> nb (b2 older than a2); then a2.
	wantNames(t, popNames(t, e.PopSpread, "p"), "b1", "a1", "b2", "a2")
}

func TestPopSpread_SpreadsAcrossNodes(t *testing.T) {
	e := newEngine(t)
	// Three nodes with 3 keys each, added node by node. The hand-outs must
	// take the counts down evenly: one key of each node per round.
	for _, n := range []string{"n1", "n2", "n3"} {
		for i := range 3 {
			mustAdd(t, e, "p", ready(fmt.Sprintf("%s-%d", n, i), n))
		}
	}
	wantNames(t, popNames(t, e.PopSpread, "p"),
		"n1-0", "n2-0", "n3-0", "n1-1", "n2-1", "n3-1", "n1-2", "n2-2", "n3-2")
}

func TestPopSpread_ReadyBeatsUnready(t *testing.T) {
	e := newEngine(t)
	// The unready keys are older and their node is fuller.
	mustAdd(t, e, "p", unready("u1", "n1"), unready("u2", "n1"), unready("u3", "n1"), ready("r1", "n2"))
	h, ok, err := e.PopSpread("p")
	if err != nil || !ok || h.Name != "r1" || !h.Ready {
		t.Fatalf("PopSpread = %+v, %v, %v; want the ready key r1", h, ok, err)
	}
	// With no ready key left the rule applies to the unready keys.
	wantNames(t, popNames(t, e.PopSpread, "p"), "u1", "u2", "u3")
}

func TestPopSpread_NodeCountIncludesUnreadyKeys(t *testing.T) {
	e := newEngine(t)
	// Ready keys: n2 has two (older), n1 has one. But n1 holds four keys
	// counting its unready ones, so n1's ready key goes first.
	mustAdd(t, e, "p",
		ready("n2-r1", "n2"), ready("n2-r2", "n2"),
		unready("n1-u1", "n1"), unready("n1-u2", "n1"), unready("n1-u3", "n1"),
		ready("n1-r1", "n1"))
	h, ok, err := e.PopSpread("p")
	if err != nil || !ok || h.Name != "n1-r1" {
		t.Fatalf("PopSpread = %q, %v, %v; want n1-r1", h.Name, ok, err)
	}
	// Now n1 holds 3 (all unready), n2 holds 2 ready: ready still wins.
	wantNames(t, popNames(t, e.PopSpread, "p"), "n2-r1", "n2-r2", "n1-u1", "n1-u2", "n1-u3")
}

func TestPopSpread_UnscheduledOnlyWhenNoCandidateIsScheduled(t *testing.T) {
	e := newEngine(t)
	// Unscheduled ready keys are the oldest and the most numerous.
	mustAdd(t, e, "p", ready("x1", ""), ready("x2", ""), ready("x3", ""), ready("s1", "n1"), unready("u1", "n2"))
	// s1 is the only scheduled ready key; then the unscheduled ready keys,
	// oldest first; the unready key comes last even though it is scheduled.
	wantNames(t, popNames(t, e.PopSpread, "p"), "s1", "x1", "x2", "x3", "u1")
}

func TestPopSpread_UnreadyKeysFollowTheSameRule(t *testing.T) {
	e := newEngine(t)
	mustAdd(t, e, "p",
		unready("x1", ""), unready("b1", "nb"), unready("a1", "na"), unready("a2", "na"), unready("b2", "nb"))
	// 2:2 tie -> nb (b1 oldest); na 2:1 -> a1; 1:1 tie -> na (a2 older than
	// b2); then b2; the unscheduled key last.
	wantNames(t, popNames(t, e.PopSpread, "p"), "b1", "a1", "a2", "b2", "x1")
}

// spreadReference is the reference controller's scan for all-ready pools:
// count keys per node, pick the first key (oldest first) on a node with a
// strictly larger count; unscheduled keys only if no key is scheduled.
func spreadReference(keys []Key) int {
	count := map[string]int{}
	for _, k := range keys {
		if k.Node != "" {
			count[k.Node]++
		}
	}
	best, bestCount := -1, 0
	for i, k := range keys {
		if k.Node != "" && count[k.Node] > bestCount {
			best, bestCount = i, count[k.Node]
		}
	}
	if best < 0 && len(keys) > 0 {
		return 0
	}
	return best
}

func TestPopSpread_MatchesReferenceScanWhenAllReady(t *testing.T) {
	e := newEngine(t)
	// A deterministic pseudo-random workload of adds and pops.
	var model []Key // oldest first
	x := uint32(12345)
	next := func(n uint32) uint32 { x = x*1664525 + 1013904223; return (x >> 8) % n }
	id := 0
	for step := range 3000 {
		if next(3) != 0 || len(model) == 0 {
			node := ""
			if r := next(8); r != 0 {
				node = fmt.Sprintf("n%d", r)
			}
			k := ready(fmt.Sprintf("k%d", id), node)
			id++
			mustAdd(t, e, "p", k)
			model = append(model, k)
			continue
		}
		want := model[spreadReference(model)]
		h, ok, err := e.PopSpread("p")
		if err != nil || !ok {
			t.Fatalf("step %d: PopSpread = %v, %v", step, ok, err)
		}
		if h.Key != want {
			t.Fatalf("step %d: PopSpread = %+v; reference picks %+v", step, h.Key, want)
		}
		model = slices.DeleteFunc(model, func(k Key) bool { return k.Name == want.Name })
	}
}

func TestPutBack_RestoresAgeNodeAndReady(t *testing.T) {
	e := newEngine(t)
	mustAdd(t, e, "p", ready("a", "n1"), unready("b", "n2"), ready("c", "n3"))
	h, ok, err := e.PopFIFO("p")
	if err != nil || !ok || h.Name != "a" {
		t.Fatalf("PopFIFO = %+v, %v, %v", h, ok, err)
	}
	if restored, err := e.PutBack("p", h); err != nil || !restored {
		t.Fatalf("PutBack = %v, %v; want true, nil", restored, err)
	}
	h2, ok, err := e.PopFIFO("p")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if h2.Key != h.Key || h2.Seq != h.Seq {
		t.Fatalf("after PutBack PopFIFO = %+v; want %+v with seq %d", h2, h.Key, h.Seq)
	}
}

func TestPutBack_ReAddInBetweenWins(t *testing.T) {
	e := newEngine(t)
	mustAdd(t, e, "p", ready("a", "n1"), ready("b", "n1"))
	h, _, err := e.PopFIFO("p")
	if err != nil || h.Name != "a" {
		t.Fatalf("PopFIFO = %+v, %v", h, err)
	}
	if ins, err := e.Add("p", unready("a", "n7")); err != nil || !ins {
		t.Fatalf("re-Add = %v, %v; want inserted", ins, err)
	}
	if restored, err := e.PutBack("p", h); err != nil || restored {
		t.Fatalf("stale PutBack = %v, %v; want false, nil", restored, err)
	}
	// The re-added key is the youngest, with its new values.
	s, err := e.Snapshot("p")
	if err != nil {
		t.Fatal(err)
	}
	got := s.Keys()
	if len(got) != 2 || got[0].Name != "b" || got[1].Key != unready("a", "n7") {
		t.Fatalf("snapshot = %+v; want b, then a on n7 unready", got)
	}
}

func TestPutBack_SecondPutBackIsStale(t *testing.T) {
	e := newEngine(t)
	mustAdd(t, e, "p", ready("a", "n1"))
	h, _, _ := e.PopFIFO("p")
	if restored, err := e.PutBack("p", h); err != nil || !restored {
		t.Fatalf("PutBack = %v, %v", restored, err)
	}
	if restored, err := e.PutBack("p", h); err != nil || restored {
		t.Fatalf("second PutBack = %v, %v; want false, nil", restored, err)
	}
	wantNames(t, snapshotNames(t, e, "p"), "a")
}

func TestPutBack_TokenOfAnotherKeyIsStale(t *testing.T) {
	e := newEngine(t)
	mustAdd(t, e, "p", ready("a", "n1"), ready("b", "n1"))
	ha, _, _ := e.PopFIFO("p")
	hb, _, _ := e.PopFIFO("p")
	forged := ha
	forged.Token = hb.Token
	if restored, err := e.PutBack("p", forged); err != nil || restored {
		t.Fatalf("PutBack with b's token for a = %v, %v; want false, nil", restored, err)
	}
	if s, _ := e.Stats("p"); s.Keys != 0 {
		t.Fatalf("stale PutBack changed the pool: %+v", s)
	}
}

func TestPutBack_ForgottenAfterWindowOfLaterHandOuts(t *testing.T) {
	if testing.Short() {
		t.Skip("hands out PutBackWindow keys")
	}
	e := newEngine(t)
	keys := make([]Key, 0, PutBackWindow+3)
	keys = append(keys, ready("old", "n1"), ready("filler", "n1"), ready("recent", "n1"))
	for i := range PutBackWindow {
		keys = append(keys, ready(fmt.Sprintf("k%d", i), "n1"))
	}
	if _, err := e.AddBatch("p", keys); err != nil {
		t.Fatal(err)
	}
	var old, recent HandedOut
	// Hand out old, filler, recent, then PutBackWindow-1 more keys: old is
	// followed by PutBackWindow+1 later hand-outs, recent by PutBackWindow-1.
	for i := range PutBackWindow + 2 {
		h, ok, err := e.PopFIFO("p")
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		switch i {
		case 0:
			old = h
		case 2:
			recent = h
		}
	}
	if old.Name != "old" || recent.Name != "recent" {
		t.Fatalf("handed out %q and %q; want old and recent", old.Name, recent.Name)
	}
	if s, _ := e.Stats("p"); s.PutBackRecords > PutBackWindow {
		t.Fatalf("PutBackRecords = %d; want at most %d", s.PutBackRecords, PutBackWindow)
	}
	if restored, err := e.PutBack("p", old); err != nil || restored {
		t.Fatalf("PutBack beyond the window = %v, %v; want false, nil", restored, err)
	}
	if restored, err := e.PutBack("p", recent); err != nil || !restored {
		t.Fatalf("PutBack within the window = %v, %v; want true, nil", restored, err)
	}
}

func TestPutBack_RemovedPoolIsNotFound(t *testing.T) {
	e := newEngine(t)
	mustAdd(t, e, "p", ready("a", "n1"))
	h, _, _ := e.PopFIFO("p")
	if _, err := e.RemovePool("p"); err != nil {
		t.Fatal(err)
	}
	_, err := e.PutBack("p", h)
	wantStatus(t, err, ErrNotFound)
}

func TestAddBatch_AddsInOrderAndCountsNewKeys(t *testing.T) {
	e := newEngine(t)
	mustAdd(t, e, "p", ready("a", "n1"))
	n, err := e.AddBatch("p", []Key{
		ready("b", "n1"),
		unready("a", "n2"), // existing: updated in place
		ready("c", ""),
		ready("b", "n3"), // twice in one batch: last values win
		{Name: "d"},
	})
	if err != nil || n != 3 {
		t.Fatalf("AddBatch = %d, %v; want 3 new keys", n, err)
	}
	s, err := e.Snapshot("p")
	if err != nil {
		t.Fatal(err)
	}
	want := []Key{unready("a", "n2"), ready("b", "n3"), ready("c", ""), {Name: "d"}}
	got := s.Keys()
	if len(got) != len(want) {
		t.Fatalf("snapshot has %d keys; want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Key != want[i] {
			t.Errorf("key %d = %+v; want %+v", i, got[i].Key, want[i])
		}
		if i > 0 && got[i].Seq <= got[i-1].Seq {
			t.Errorf("seq not increasing at %d: %d after %d", i, got[i].Seq, got[i-1].Seq)
		}
	}
}

func TestAddBatch_OneBadKeyChangesNothing(t *testing.T) {
	bad := map[string]Key{
		"empty name":         {Name: ""},
		"name too long":      {Name: string(repeat('n', MaxNameLen+1))},
		"namespace too long": {Namespace: string(repeat('s', MaxNamespaceLen+1)), Name: "x"},
		"node too long":      {Name: "x", Node: string(repeat('d', MaxNodeLen+1))},
		"invalid UTF-8":      {Name: "x\xff"},
		"NUL byte":           {Name: "x", Node: "n\x00"},
	}
	for what, k := range bad {
		t.Run(what, func(t *testing.T) {
			e := newEngine(t)
			mustAdd(t, e, "p", ready("a", "n1"))
			before, _ := e.Snapshot("p")
			_, err := e.AddBatch("p", []Key{ready("b", "n1"), unready("a", "n2"), k, ready("c", "n1")})
			wantStatus(t, err, ErrInvalidName)
			after, _ := e.Snapshot("p")
			if !slices.Equal(before.Keys(), after.Keys()) {
				t.Fatalf("pool changed by a failed batch: %+v -> %+v", before.Keys(), after.Keys())
			}
			// Into a pool that does not exist: it is not created.
			_, err = e.AddBatch("fresh", []Key{ready("b", "n1"), k})
			wantStatus(t, err, ErrInvalidName)
			_, err = e.Stats("fresh")
			wantStatus(t, err, ErrNotFound)
		})
	}
}

func TestAddBatch_ManyKeysAndReusedBuilders(t *testing.T) {
	e := newEngine(t)
	for round := range 3 {
		keys := make([]Key, 1000*(round+1))
		for i := range keys {
			keys[i] = ready(fmt.Sprintf("r%d-k%d", round, i), fmt.Sprintf("n%d", i%7))
		}
		n, err := e.AddBatch(fmt.Sprintf("p%d", round), keys)
		if err != nil || n != len(keys) {
			t.Fatalf("AddBatch round %d = %d, %v", round, n, err)
		}
		s, err := e.Snapshot(fmt.Sprintf("p%d", round))
		if err != nil || s.Len() != len(keys) {
			t.Fatalf("snapshot round %d: %v", round, err)
		}
		for i := range keys {
			if s.Key(i).Key != keys[i] {
				t.Fatalf("round %d key %d = %+v; want %+v", round, i, s.Key(i).Key, keys[i])
			}
		}
	}
}

func TestStats_CountsKeysReadyScheduledNodesAndPutBacks(t *testing.T) {
	e := newEngine(t)
	mustAdd(t, e, "p", ready("a", "n1"), unready("b", "n1"), ready("c", "n2"), ready("d", ""), unready("e", ""))
	s, err := e.Stats("p")
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{Keys: 5, ReadyKeys: 3, ScheduledKeys: 3, Nodes: 2, PutBackRecords: 0}
	if s != want {
		t.Fatalf("Stats = %+v; want %+v", s, want)
	}
	if _, _, err := e.PopFIFO("p"); err != nil {
		t.Fatal(err)
	}
	s, _ = e.Stats("p")
	want = Stats{Keys: 4, ReadyKeys: 2, ScheduledKeys: 2, Nodes: 2, PutBackRecords: 1}
	if s != want {
		t.Fatalf("Stats after a hand-out = %+v; want %+v", s, want)
	}
}

func TestSnapshot_ListsEveryKeyOldestFirst(t *testing.T) {
	e := newEngine(t)
	keys := []Key{ready("a", "n1"), unready("b", ""), {Namespace: "other", Name: "c", Node: "n2", Ready: true}}
	mustAdd(t, e, "pool/1", keys...)
	s, err := e.Snapshot("pool/1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Pool() != "pool/1" || s.Len() != 3 {
		t.Fatalf("snapshot pool %q len %d; want pool/1 len 3", s.Pool(), s.Len())
	}
	for i, k := range s.All() {
		if k.Key != keys[i] {
			t.Errorf("key %d = %+v; want %+v", i, k.Key, keys[i])
		}
	}
	if b := s.Bytes(); string(b[4:8]) != "BPSN" {
		t.Errorf("identifier %q; want BPSN", b[4:8])
	}
	// The seq in the snapshot is the one a hand-out reports.
	first := s.Key(0)
	h, _, _ := e.PopFIFO("pool/1")
	if h.Seq != first.Seq {
		t.Fatalf("PopFIFO seq %d; snapshot said %d", h.Seq, first.Seq)
	}
}

func TestSnapshot_EmptyPool(t *testing.T) {
	e := newEngine(t)
	mustAdd(t, e, "p", ready("a", "n1"))
	_, _, _ = e.PopFIFO("p")
	s, err := e.Snapshot("p")
	if err != nil || s.Len() != 0 || len(s.Keys()) != 0 {
		t.Fatalf("Snapshot of empty pool = %v, %v", s, err)
	}
}

func TestNodeStats_SortedByNameWithoutUnscheduled(t *testing.T) {
	e := newEngine(t)
	mustAdd(t, e, "p",
		ready("a", "n2"), unready("b", "n2"), ready("c", "n10"), unready("d", "n1"), ready("e", ""), ready("f", "n2"))
	got, err := e.NodeStats("p")
	if err != nil {
		t.Fatal(err)
	}
	want := []NodeStat{
		{Node: "n1", Keys: 1, ReadyKeys: 0},
		{Node: "n10", Keys: 1, ReadyKeys: 1},
		{Node: "n2", Keys: 3, ReadyKeys: 2},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("NodeStats = %+v; want %+v", got, want)
	}
}

func TestEngines_ShareNothing(t *testing.T) {
	a, b := newEngine(t), newEngine(t)
	mustAdd(t, a, "p", ready("a", "n1"))
	_, err := b.Stats("p")
	wantStatus(t, err, ErrNotFound)
}

func repeat(c byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return b
}
