//go:build cgo

package berth

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/berth-sched/berth/bindings/go/internal/fb"
)

func newCache(t testing.TB, opts CacheOptions) *Cache {
	t.Helper()
	c, err := NewCache(opts)
	if err != nil {
		t.Fatalf("NewCache: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// syncedCache is a cache after an empty Replace at resourceVersion 1.
func syncedCache(t testing.TB) *Cache {
	t.Helper()
	c := newCache(t, CacheOptions{})
	if err := c.Replace(nil, 1); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	return c
}

func obj(ns, name string, rv uint64, labels ...string) Object {
	o := Object{Namespace: ns, Name: name, ResourceVersion: rv, Labels: map[string]string{},
		Payload: []byte(fmt.Sprintf(`{"name":%q,"rv":%d}`, name, rv))}
	for i := 0; i+1 < len(labels); i += 2 {
		o.Labels[labels[i]] = labels[i+1]
	}
	return o
}

func upsert(t testing.TB, c *Cache, o Object) bool {
	t.Helper()
	applied, err := c.Upsert(o)
	if err != nil {
		t.Fatalf("Upsert(%s/%s@%d): %v", o.Namespace, o.Name, o.ResourceVersion, err)
	}
	return applied
}

func del(t testing.TB, c *Cache, ns, name string, rv uint64) bool {
	t.Helper()
	applied, err := c.Delete(ns, name, rv)
	if err != nil {
		t.Fatalf("Delete(%s/%s@%d): %v", ns, name, rv, err)
	}
	return applied
}

// getRV returns the resourceVersion the cache holds for ns/name, 0 if none.
func getRV(t testing.TB, c *Cache, ns, name string) uint64 {
	t.Helper()
	v, ok, err := c.Get(ns, name)
	if err != nil {
		t.Fatalf("Get(%s/%s): %v", ns, name, err)
	}
	if !ok {
		return 0
	}
	if v.Namespace() != ns || v.Name() != name {
		t.Fatalf("Get(%s/%s) returned %s/%s", ns, name, v.Namespace(), v.Name())
	}
	return v.ResourceVersion()
}

func list(t testing.TB, c *Cache, ns string, sel *Selector) *ObjectList {
	t.Helper()
	l, err := c.List(ns, sel)
	if err != nil {
		t.Fatalf("List(%q, %q): %v", ns, sel, err)
	}
	return l
}

// keys returns "ns/name@rv" of every listed object, in list order.
func keys(l *ObjectList) []string {
	var out []string
	for _, v := range l.All() {
		out = append(out, fmt.Sprintf("%s/%s@%d", v.Namespace(), v.Name(), v.ResourceVersion()))
	}
	return out
}

func stats(t testing.TB, c *Cache) CacheStats {
	t.Helper()
	s, err := c.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return s
}

func TestCache_ListAndGetAreErrNotSyncedUntilTheFirstReplace(t *testing.T) {
	c := newCache(t, CacheOptions{})
	if s := stats(t, c); s.Synced {
		t.Fatalf("new cache Stats = %+v; want unsynced", s)
	}
	// Writes are accepted before the sync; reads are not.
	upsert(t, c, obj("ns", "early", 50))
	_, err := c.List("", nil)
	wantStatus(t, err, ErrNotSynced)
	_, _, err = c.Get("ns", "early")
	wantStatus(t, err, ErrNotSynced)
	if !strings.Contains(err.Error(), "BERTH_ERR_NOT_SYNCED") {
		t.Fatalf("error %q does not name the status", err)
	}

	if err := c.Replace([]Object{obj("ns", "listed", 10)}, 10); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, c); !s.Synced {
		t.Fatalf("Stats after Replace = %+v; want synced", s)
	}
	// The write made before the sync is newer than the list, so it stays.
	if got := keys(list(t, c, "", nil)); !slices.Equal(got, []string{"ns/early@50", "ns/listed@10"}) {
		t.Fatalf("List after Replace = %q", got)
	}
}

func TestCache_UpsertOlderOrEqualResourceVersionIsIgnored(t *testing.T) {
	c := syncedCache(t)
	if !upsert(t, c, obj("ns", "a", 10, "v", "10")) {
		t.Fatal("first Upsert not applied")
	}
	if upsert(t, c, obj("ns", "a", 9, "v", "9")) {
		t.Error("older Upsert applied")
	}
	if upsert(t, c, obj("ns", "a", 10, "v", "10-again")) {
		t.Error("Upsert at the same resourceVersion applied")
	}
	v, ok, err := c.Get("ns", "a")
	if err != nil || !ok {
		t.Fatalf("Get = %v, %v", ok, err)
	}
	if val, _ := v.Label("v"); v.ResourceVersion() != 10 || val != "10" {
		t.Fatalf("cached a@%d v=%q; want the first write", v.ResourceVersion(), val)
	}
	if !upsert(t, c, obj("ns", "a", 11, "v", "11")) {
		t.Fatal("newer Upsert not applied")
	}
	if got := getRV(t, c, "ns", "a"); got != 11 {
		t.Fatalf("rv = %d; want 11", got)
	}
	s := stats(t, c)
	if s.Objects != 1 || s.Applied != 2 || s.Ignored != 2 || s.ResourceVersion != 11 {
		t.Fatalf("Stats = %+v; want 1 object, 2 applied, 2 ignored, rv 11", s)
	}
}

func TestCache_UpsertReplacesLabelsAndPayloadInTheIndex(t *testing.T) {
	c := syncedCache(t)
	upsert(t, c, obj("ns", "a", 2, "tier", "web"))
	upsert(t, c, obj("ns", "a", 3, "tier", "db"))
	if got := keys(list(t, c, "", mustParse(t, "tier=web"))); len(got) != 0 {
		t.Fatalf("tier=web still lists %q after the label changed", got)
	}
	l := list(t, c, "ns", mustParse(t, "tier=db"))
	if got := keys(l); !slices.Equal(got, []string{"ns/a@3"}) {
		t.Fatalf("tier=db lists %q", got)
	}
	if p := string(l.At(0).Payload()); p != `{"name":"a","rv":3}` {
		t.Fatalf("payload %q is not the newer one", p)
	}
}

func TestCache_DeleteLeavesTombstoneSoAnOlderAddDoesNotResurrect(t *testing.T) {
	c := syncedCache(t)
	upsert(t, c, obj("ns", "a", 10))
	if !del(t, c, "ns", "a", 12) {
		t.Fatal("Delete not applied")
	}
	if got := getRV(t, c, "ns", "a"); got != 0 {
		t.Fatalf("a still cached at %d after Delete", got)
	}
	if upsert(t, c, obj("ns", "a", 11)) {
		t.Error("an add older than the delete was applied")
	}
	if upsert(t, c, obj("ns", "a", 12)) {
		t.Error("an add at the delete's resourceVersion was applied")
	}
	if got := getRV(t, c, "ns", "a"); got != 0 {
		t.Fatalf("a resurrected at %d", got)
	}
	if s := stats(t, c); s.Objects != 0 || s.Tombstones != 1 {
		t.Fatalf("Stats = %+v; want 0 objects, 1 tombstone", s)
	}
	if !upsert(t, c, obj("ns", "a", 13)) {
		t.Fatal("an add newer than the delete was ignored")
	}
	if got := getRV(t, c, "ns", "a"); got != 13 {
		t.Fatalf("a at %d; want 13", got)
	}
}

func TestCache_DeleteOlderThanTheCachedObjectIsIgnored(t *testing.T) {
	c := syncedCache(t)
	upsert(t, c, obj("ns", "a", 10))
	if del(t, c, "ns", "a", 9) {
		t.Error("a delete older than the object was applied")
	}
	if got := getRV(t, c, "ns", "a"); got != 10 {
		t.Fatalf("a at %d; want 10", got)
	}
}

func TestCache_DeleteWithResourceVersion0DeletesWhateverIsCached(t *testing.T) {
	c := syncedCache(t)
	upsert(t, c, obj("ns", "a", 1000))
	if !del(t, c, "ns", "a", 0) {
		t.Fatal("Delete rv 0 not applied")
	}
	if got := getRV(t, c, "ns", "a"); got != 0 {
		t.Fatalf("a still cached at %d", got)
	}
	// The tombstone carries the deleted version: an older add stays out.
	if upsert(t, c, obj("ns", "a", 999)) {
		t.Error("an add older than the deleted version resurrected a")
	}
}

func TestCache_DeleteOfAnAbsentObjectRecordsATombstone(t *testing.T) {
	c := syncedCache(t)
	if _, err := c.Delete("ns", "ghost", 20); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, c); s.Tombstones != 1 {
		t.Fatalf("Stats = %+v; want 1 tombstone", s)
	}
	if upsert(t, c, obj("ns", "ghost", 19)) {
		t.Fatal("an add older than the delete of an absent object was applied")
	}
}

func TestCache_TombstoneLimitForgetsTheOldestTombstone(t *testing.T) {
	c := newCache(t, CacheOptions{TombstoneLimit: 2})
	if err := c.Replace(nil, 1); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"a", "b", "c"} {
		del(t, c, "ns", name, uint64(10+i))
	}
	if s := stats(t, c); s.Tombstones != 2 {
		t.Fatalf("Stats = %+v; want 2 tombstones (the limit)", s)
	}
	if !upsert(t, c, obj("ns", "a", 5)) {
		t.Error("the oldest tombstone (a) was not forgotten")
	}
	if upsert(t, c, obj("ns", "c", 5)) {
		t.Error("the newest tombstone (c) was forgotten")
	}
}

func TestCache_ReplaceKeepsEntriesAndTombstonesNewerThanTheList(t *testing.T) {
	c := newCache(t, CacheOptions{})
	if err := c.Replace([]Object{obj("ns", "old", 3), obj("ns", "gone", 4), obj("ns", "doomed", 5)}, 5); err != nil {
		t.Fatal(err)
	}
	// After the list was taken at 20 (but before it arrives): a new object,
	// and a delete of an object the list still has.
	upsert(t, c, obj("ns", "newer", 21))
	del(t, c, "ns", "doomed", 22)
	upsert(t, c, obj("ns", "stale", 8)) // older than the list and not in it

	relist := []Object{obj("ns", "old", 15), obj("ns", "doomed", 18), obj("ns", "fresh", 19)}
	if err := c.Replace(relist, 20); err != nil {
		t.Fatal(err)
	}
	got := keys(list(t, c, "", nil))
	want := []string{"ns/fresh@19", "ns/newer@21", "ns/old@15"}
	if !slices.Equal(got, want) {
		t.Fatalf("after Replace: %q; want %q (newer kept, doomed stays deleted, gone and stale dropped)", got, want)
	}
	if s := stats(t, c); s.Objects != 3 || s.ResourceVersion < 22 {
		t.Fatalf("Stats = %+v; want 3 objects, resourceVersion >= 22", s)
	}
	// The tombstone newer than the list still guards: doomed stays out.
	if upsert(t, c, obj("ns", "doomed", 21)) {
		t.Error("an add older than the kept tombstone resurrected doomed")
	}
}

func TestCache_ReplaceResourceVersionIsTheListsResourceVersion(t *testing.T) {
	c := newCache(t, CacheOptions{})
	if err := c.Replace([]Object{obj("a", "x", 7)}, 10); err != nil {
		t.Fatal(err)
	}
	l := list(t, c, "", nil)
	if l.ResourceVersion() != 10 || stats(t, c).ResourceVersion != 10 {
		t.Fatalf("list rv %d, stats %+v; want 10", l.ResourceVersion(), stats(t, c))
	}
	upsert(t, c, obj("a", "y", 12))
	if l := list(t, c, "a", nil); l.ResourceVersion() != 12 {
		t.Fatalf("list rv after a newer upsert = %d; want 12", l.ResourceVersion())
	}
}

func TestCache_ListReturnsObjectsSortedWithLabelsAndPayload(t *testing.T) {
	c := syncedCache(t)
	want := []Object{
		obj("a", "x", 5, "app", "web", "example.com/team", "blue"),
		obj("a", "y", 6),
		obj("b", "a", 7, "empty", ""),
		obj("", "top", 8, "app", "web"),
	}
	want[1].Payload = nil
	want[2].Payload = bytes.Repeat([]byte{0, 1, 2, 255}, 1000) // binary, 4000 bytes
	for _, i := range []int{2, 0, 3, 1} {
		upsert(t, c, want[i])
	}
	l := list(t, c, "", nil)
	if got := keys(l); !slices.Equal(got, []string{"/top@8", "a/x@5", "a/y@6", "b/a@7"}) {
		t.Fatalf("List = %q; want sorted by (namespace, name)", got)
	}
	byName := map[string]Object{}
	for _, o := range want {
		byName[o.Name] = o
	}
	for _, v := range l.All() {
		w := byName[v.Name()]
		if !maps.Equal(v.Labels(), w.Labels) || v.LabelsLen() != len(w.Labels) {
			t.Errorf("%s: labels %v; want %v", v.Name(), v.Labels(), w.Labels)
		}
		if !bytes.Equal(v.Payload(), w.Payload) {
			t.Errorf("%s: payload %q; want %q", v.Name(), v.Payload(), w.Payload)
		}
		for k, val := range w.Labels {
			if got, ok := v.Label(k); !ok || got != val {
				t.Errorf("%s: Label(%q) = %q, %v; want %q", v.Name(), k, got, ok, val)
			}
		}
		if _, ok := v.Label("missing"); ok {
			t.Errorf("%s: Label(missing) found", v.Name())
		}
		o := v.Object()
		if o.Namespace != w.Namespace || o.Name != w.Name || o.ResourceVersion != w.ResourceVersion ||
			!maps.Equal(o.Labels, w.Labels) || !bytes.Equal(o.Payload, w.Payload) {
			t.Errorf("Object() = %+v; want %+v", o, w)
		}
	}
	if got := keys(list(t, c, "a", mustParse(t, "app=web"))); !slices.Equal(got, []string{"a/x@5"}) {
		t.Fatalf("List(a, app=web) = %q", got)
	}
}

func TestCache_ObjectViewAliasesTheListBufferAndObjectCopies(t *testing.T) {
	c := syncedCache(t)
	upsert(t, c, obj("ns", "a", 2, "k", "v"))
	l := list(t, c, "ns", nil)
	buf := l.Bytes()
	within := func(p unsafe.Pointer) bool {
		start := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
		return uintptr(p) >= start && uintptr(p) < start+uintptr(len(buf))
	}
	v := l.At(0)
	p := v.Payload()
	if len(p) == 0 || !within(unsafe.Pointer(unsafe.SliceData(p))) {
		t.Fatal("Payload is not a sub-slice of the list's buffer")
	}
	if cap(p) != len(p) {
		t.Fatalf("Payload cap %d > len %d: an append would overwrite the buffer", cap(p), len(p))
	}
	if !within(unsafe.Pointer(unsafe.StringData(v.Name()))) {
		t.Fatal("Name is not read in place")
	}
	o := v.Object()
	if within(unsafe.Pointer(unsafe.SliceData(o.Payload))) || within(unsafe.Pointer(unsafe.StringData(o.Name))) {
		t.Fatal("Object() shares memory with the list")
	}
	if got := string(p); got != `{"name":"a","rv":2}` {
		t.Fatalf("payload %q", got)
	}
}

func TestCache_GetReturnsTheObjectOrNotFound(t *testing.T) {
	c := syncedCache(t)
	upsert(t, c, obj("ns", "a", 3, "app", "web"))
	v, ok, err := c.Get("ns", "a")
	if err != nil || !ok {
		t.Fatalf("Get = %v, %v", ok, err)
	}
	if val, _ := v.Label("app"); v.Name() != "a" || v.ResourceVersion() != 3 || val != "web" {
		t.Fatalf("Get = %+v", v.Object())
	}
	for _, k := range [][2]string{{"ns", "b"}, {"other", "a"}, {"", "a"}} {
		v, ok, err := c.Get(k[0], k[1])
		if err != nil || ok {
			t.Fatalf("Get(%s/%s) = %v, %v; want not found", k[0], k[1], ok, err)
		}
		if v.Name() != "" || v.Payload() != nil || v.Labels() == nil || v.ResourceVersion() != 0 {
			t.Fatal("the zero ObjectView does not read as empty")
		}
	}
}

func TestCache_ApplyRunsEventsInOrderAndCountsTheApplied(t *testing.T) {
	c := syncedCache(t)
	n, err := c.Apply([]Event{
		{Type: Added, Object: obj("ns", "a", 10, "app", "web")},
		{Type: Added, Object: obj("ns", "b", 11)},
		{Type: Modified, Object: obj("ns", "a", 12, "app", "db")},
		{Type: Modified, Object: obj("ns", "b", 9)}, // stale: ignored
		{Type: Deleted, Object: Object{Namespace: "ns", Name: "b", ResourceVersion: 13}},
		{Type: Added, Object: obj("ns", "b", 12)}, // older than the delete: ignored
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("Apply applied %d; want 4", n)
	}
	if got := keys(list(t, c, "", nil)); !slices.Equal(got, []string{"ns/a@12"}) {
		t.Fatalf("after Apply: %q", got)
	}
	if v, _, _ := c.Get("ns", "a"); v.Labels()["app"] != "db" {
		t.Fatalf("a labels %v; want the Modified ones", v.Labels())
	}
	if n, err := c.Apply(nil); err != nil || n != 0 {
		t.Fatalf("empty Apply = %d, %v", n, err)
	}
}

func TestCache_ApplyIsAllOrNothing(t *testing.T) {
	c := syncedCache(t)
	upsert(t, c, obj("ns", "keep", 5))
	before := stats(t, c)
	bad := []struct {
		what  string
		event Event
		want  error
	}{
		{"invalid label key", Event{Type: Added, Object: obj("ns", "c", 7, "-bad", "x")}, ErrInvalidName},
		{"empty name", Event{Type: Modified, Object: obj("ns", "", 7)}, ErrInvalidName},
		{"resourceVersion 0", Event{Type: Added, Object: obj("ns", "c", 0)}, ErrInvalidArgument},
	}
	for _, b := range bad {
		t.Run(b.what, func(t *testing.T) {
			n, err := c.Apply([]Event{
				{Type: Added, Object: obj("ns", "a", 10)},
				{Type: Deleted, Object: Object{Namespace: "ns", Name: "keep", ResourceVersion: 11}},
				b.event,
			})
			if n != 0 {
				t.Errorf("failed Apply reports %d applied", n)
			}
			wantStatus(t, err, b.want)
			if !strings.Contains(err.Error(), "event 2") {
				t.Errorf("error %q does not name the bad event's index 2", err)
			}
			if got := keys(list(t, c, "", nil)); !slices.Equal(got, []string{"ns/keep@5"}) {
				t.Fatalf("a failed Apply changed the cache: %q", got)
			}
			if s := stats(t, c); s != before {
				t.Fatalf("Stats changed: %+v -> %+v", before, s)
			}
		})
	}
	t.Run("unknown event type", func(t *testing.T) {
		_, err := c.Apply([]Event{{Type: Added, Object: obj("ns", "a", 10)}, {Type: EventType(7), Object: obj("ns", "b", 10)}})
		if err == nil {
			t.Fatal("Apply accepted event type 7")
		}
		if got := keys(list(t, c, "", nil)); !slices.Equal(got, []string{"ns/keep@5"}) {
			t.Fatalf("a failed Apply changed the cache: %q", got)
		}
	})
}

func TestCache_BadInputIsRejectedAndChangesNothing(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	tooMany := map[string]string{}
	for i := range MaxLabels + 1 {
		tooMany[fmt.Sprintf("k%d", i)] = "v"
	}
	cases := []struct {
		what string
		o    Object
		want error
	}{
		{"empty name", obj("ns", "", 1), ErrInvalidName},
		{"name over 253 bytes", obj("ns", long(MaxNameLen+1), 1), ErrInvalidName},
		{"namespace over 63 bytes", obj(long(MaxNamespaceLen+1), "a", 1), ErrInvalidName},
		{"name invalid UTF-8", obj("ns", "a\xff", 1), ErrInvalidName},
		{"label key starting with '-'", obj("ns", "a", 1, "-k", "v"), ErrInvalidName},
		{"label key with two slashes", obj("ns", "a", 1, "a/b/c", "v"), ErrInvalidName},
		{"label key empty", obj("ns", "a", 1, "", "v"), ErrInvalidName},
		{"label value with a space", obj("ns", "a", 1, "k", "a b"), ErrInvalidName},
		{"label value over 63 bytes", obj("ns", "a", 1, "k", long(64)), ErrInvalidName},
		{"resourceVersion 0", obj("ns", "a", 0), ErrInvalidArgument},
		{"too many labels", Object{Name: "a", ResourceVersion: 1, Labels: tooMany}, ErrInvalidArgument},
	}
	c := syncedCache(t)
	for _, tc := range cases {
		t.Run(tc.what, func(t *testing.T) {
			_, err := c.Upsert(tc.o)
			wantStatus(t, err, tc.want)
			var be *Error
			if !errors.As(err, &be) || be.Message == "" {
				t.Fatalf("error %#v carries no library message", err)
			}
			_, err = c.Apply([]Event{{Type: Added, Object: tc.o}})
			wantStatus(t, err, tc.want)
			err = c.Replace([]Object{tc.o}, 100)
			if err == nil {
				t.Fatal("Replace accepted it")
			}
		})
	}
	if _, err := c.Delete("ns", "", 1); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Delete with an empty name: %v", err)
	}
	if _, _, err := c.Get("ns", ""); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Get with an empty name: %v", err)
	}
	if _, err := c.List(long(MaxNamespaceLen+1), nil); !errors.Is(err, ErrInvalidName) {
		t.Errorf("List with a namespace over 63 bytes: %v", err)
	}
	if s := stats(t, c); s.Objects != 0 || s.Tombstones != 0 || s.Applied != 0 || s.ResourceVersion != 1 {
		t.Fatalf("bad input changed the cache: %+v", s)
	}
}

func TestCache_PayloadLimitIsEnforced(t *testing.T) {
	c := syncedCache(t)
	big := make([]byte, MaxPayloadLen+1)
	_, err := c.Upsert(Object{Name: "big", ResourceVersion: 2, Payload: big})
	wantStatus(t, err, ErrInvalidArgument)
	if !upsert(t, c, Object{Name: "max", ResourceVersion: 3, Payload: big[:MaxPayloadLen]}) {
		t.Fatal("a payload of exactly MaxPayloadLen was not applied")
	}
	v, ok, err := c.Get("", "max")
	if err != nil || !ok || len(v.Payload()) != MaxPayloadLen {
		t.Fatalf("Get = %d bytes, %v, %v", len(v.Payload()), ok, err)
	}
}

func TestCache_FailedReplaceLeavesTheCacheUnsynced(t *testing.T) {
	c := newCache(t, CacheOptions{})
	err := c.Replace([]Object{obj("ns", "a", 1), obj("ns", "b", 1, "bad key", "v")}, 5)
	wantStatus(t, err, ErrInvalidName)
	if s := stats(t, c); s.Synced || s.Objects != 0 {
		t.Fatalf("Stats after a failed Replace = %+v; want unsynced and empty", s)
	}
	_, err = c.List("", nil)
	wantStatus(t, err, ErrNotSynced)
}

func TestCache_ClosedCacheEveryMethodReturnsErrClosed(t *testing.T) {
	c, err := NewCache(CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Replace(nil, 1); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := c.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	var nilCache *Cache
	for _, cache := range []*Cache{c, nilCache} {
		calls := map[string]func() error{
			"Upsert":  func() error { _, err := cache.Upsert(obj("ns", "a", 1)); return err },
			"Delete":  func() error { _, err := cache.Delete("ns", "a", 1); return err },
			"Apply":   func() error { _, err := cache.Apply([]Event{{Object: obj("ns", "a", 1)}}); return err },
			"Replace": func() error { return cache.Replace(nil, 2) },
			"List":    func() error { _, err := cache.List("", nil); return err },
			"Get":     func() error { _, _, err := cache.Get("ns", "a"); return err },
			"Stats":   func() error { _, err := cache.Stats(); return err },
		}
		for name, call := range calls {
			err := call()
			if !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close: error = %v; want ErrClosed", name, err)
			} else if !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "cache") {
				t.Errorf("%s after Close: error %q does not name the method and the cache", name, err)
			}
		}
		if err := cache.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCache_ListWithAClosedSelectorIsErrClosed(t *testing.T) {
	c := syncedCache(t)
	s, err := ParseSelector("app=web")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = c.List("", s)
	if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "selector") {
		t.Fatalf("List with a closed selector: %v; want ErrClosed naming the selector", err)
	}
}

// model is a Go model of the cache's version guard, to check the library
// against. Deletes always carry a resourceVersion here.
type model struct {
	entries map[[2]string]modelEntry
}

type modelEntry struct {
	obj     Object // zero for a tombstone
	rv      uint64
	present bool
}

func (m *model) upsert(o Object) bool {
	k := [2]string{o.Namespace, o.Name}
	if e, ok := m.entries[k]; ok && e.rv >= o.ResourceVersion {
		return false
	}
	m.entries[k] = modelEntry{obj: o, rv: o.ResourceVersion, present: true}
	return true
}

func (m *model) delete(ns, name string, rv uint64) bool {
	k := [2]string{ns, name}
	e, ok := m.entries[k]
	if ok && (e.present && e.rv > rv || !e.present && e.rv >= rv) {
		return false
	}
	m.entries[k] = modelEntry{rv: rv}
	return true
}

func (m *model) replace(objects []Object, listRV uint64) {
	next := map[[2]string]modelEntry{}
	for k, e := range m.entries {
		if e.rv > listRV {
			next[k] = e
		}
	}
	for _, o := range objects {
		k := [2]string{o.Namespace, o.Name}
		if _, newer := next[k]; !newer {
			next[k] = modelEntry{obj: o, rv: o.ResourceVersion, present: true}
		}
	}
	m.entries = next
}

// list is the naive filter: every present object, in namespace ns (all if
// empty) matching sel, sorted by (namespace, name).
func (m *model) list(t testing.TB, ns string, sel *Selector) []Object {
	var out []Object
	for _, e := range m.entries {
		if e.present && (ns == "" || e.obj.Namespace == ns) && mustMatch(t, sel, e.obj.Labels) {
			out = append(out, e.obj)
		}
	}
	slices.SortFunc(out, func(a, b Object) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

var (
	randNamespaces = []string{"", "ns-a", "ns-b", "kube-system"}
	randKeys       = []string{"app", "tier", "env", "x", "example.com/team"}
	randValues     = []string{"", "a", "b", "c", "1", "2", "10"}
	randSelectors  = []string{
		"", "app=a", "app==b", "app!=a", "app=", "tier in (a,b)", "tier notin (a,b)", "env", "!env",
		"x>1", "x<2", "app=a,tier!=b", "example.com/team in (a,c),!x", "app,tier,env",
		"app in (a),tier in (b),env in (c)", "x notin (),app",
	}
)

func randObject(r *rand.Rand, rv uint64) Object {
	o := Object{
		Namespace:       randNamespaces[r.IntN(len(randNamespaces))],
		Name:            fmt.Sprintf("obj-%d", r.IntN(150)),
		ResourceVersion: rv,
		Labels:          map[string]string{},
		Payload:         fmt.Appendf(nil, "payload-%d", rv),
	}
	for _, k := range randKeys {
		if r.IntN(2) == 0 {
			o.Labels[k] = randValues[r.IntN(len(randValues))]
		}
	}
	return o
}

func checkAgainstModel(t *testing.T, c *Cache, m *model, when string) {
	t.Helper()
	for _, text := range randSelectors {
		sel := mustParse(t, text)
		for _, ns := range randNamespaces {
			want := m.list(t, ns, sel)
			l := list(t, c, ns, sel)
			if l.Len() != len(want) {
				t.Fatalf("%s: List(%q, %q) has %d objects; the naive filter %d\ngot  %q", when, ns, text, l.Len(), len(want), keys(l))
			}
			for i, w := range want {
				v := l.At(i)
				if v.Namespace() != w.Namespace || v.Name() != w.Name || v.ResourceVersion() != w.ResourceVersion ||
					!maps.Equal(v.Labels(), w.Labels) || !bytes.Equal(v.Payload(), w.Payload) {
					t.Fatalf("%s: List(%q, %q)[%d] = %+v; want %+v", when, ns, text, i, v.Object(), w)
				}
			}
		}
	}
}

func TestCache_ListByNamespaceAndSelectorEqualsANaiveFilter(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	c := newCache(t, CacheOptions{})
	m := &model{entries: map[[2]string]modelEntry{}}
	rv := uint64(0)

	// A first list, then watch traffic with stale events mixed in, then a
	// relist taken a little before the latest event, then more traffic.
	var first []Object
	seen := map[[2]string]bool{}
	for range 300 {
		rv++
		o := randObject(r, rv)
		if k := [2]string{o.Namespace, o.Name}; !seen[k] {
			seen[k] = true
			first = append(first, o)
		}
	}
	if err := c.Replace(first, rv); err != nil {
		t.Fatal(err)
	}
	m.replace(first, rv)
	checkAgainstModel(t, c, m, "after the first Replace")

	traffic := func(n int) {
		for range n {
			rv++
			eventRV := rv - uint64(r.IntN(5)) // sometimes stale
			switch r.IntN(10) {
			case 0, 1:
				o := randObject(r, eventRV)
				if got, want := del(t, c, o.Namespace, o.Name, eventRV), m.delete(o.Namespace, o.Name, eventRV); got != want {
					t.Fatalf("Delete(%s/%s@%d) = %v; model says %v", o.Namespace, o.Name, eventRV, got, want)
				}
			default:
				o := randObject(r, eventRV)
				if got, want := upsert(t, c, o), m.upsert(o); got != want {
					t.Fatalf("Upsert(%s/%s@%d) = %v; model says %v", o.Namespace, o.Name, eventRV, got, want)
				}
			}
		}
	}
	traffic(1500)
	checkAgainstModel(t, c, m, "after watch traffic")

	listRV := rv - 40
	var relist []Object
	seen = map[[2]string]bool{}
	for range 200 {
		o := randObject(r, listRV-uint64(r.IntN(100)))
		if k := [2]string{o.Namespace, o.Name}; !seen[k] {
			seen[k] = true
			relist = append(relist, o)
		}
	}
	if err := c.Replace(relist, listRV); err != nil {
		t.Fatal(err)
	}
	m.replace(relist, listRV)
	checkAgainstModel(t, c, m, "after the relist")

	rv += 10 // later events are newer than every tombstone the relist dropped
	traffic(1500)
	checkAgainstModel(t, c, m, "after more traffic")

	present := 0
	for _, e := range m.entries {
		if e.present {
			present++
		}
	}
	if s := stats(t, c); s.Objects != uint64(present) {
		t.Fatalf("Stats.Objects = %d; model holds %d", s.Objects, present)
	}
}

func TestObjectBuilder_EncodesEventsAndListsAsTheSchemaSays(t *testing.T) {
	ob := getObjectBuilder()
	defer putObjectBuilder(ob)
	buf := ob.eventBatch([]Event{
		{Type: Modified, Object: obj("ns", "a", 3, "k", "v", "e", "")},
		{Type: Deleted, Object: obj("", "b", 4, "k", "v")},
		{Type: Added, Object: Object{Name: "", ResourceVersion: 5}},
	})
	if string(buf[4:8]) != "BEVB" {
		t.Fatalf("identifier %q", buf[4:8])
	}
	root := fb.GetRootAsEventBatch(buf, 0)
	if root.EventsLength() != 3 {
		t.Fatalf("%d events", root.EventsLength())
	}
	var ev fb.Event
	var o fb.Object
	var l fb.Label
	root.Events(&ev, 0)
	ev.Object(&o)
	if ev.Type() != fb.EventTypeModified || string(o.Namespace()) != "ns" || string(o.Name()) != "a" ||
		o.ResourceVersion() != 3 || o.LabelsLength() != 2 || string(o.PayloadBytes()) != `{"name":"a","rv":3}` {
		t.Fatalf("event 0 decodes wrong")
	}
	got := map[string]string{}
	for j := range o.LabelsLength() {
		o.Labels(&l, j)
		if string(l.Key()) == "e" && l.Value() != nil {
			t.Error("an empty label value is written instead of left absent")
		}
		got[string(l.Key())] = string(l.Value())
	}
	if !maps.Equal(got, map[string]string{"k": "v", "e": ""}) {
		t.Errorf("labels %v", got)
	}
	root.Events(&ev, 1)
	ev.Object(&o)
	if ev.Type() != fb.EventTypeDeleted || o.Namespace() != nil || o.LabelsLength() != 0 || o.PayloadLength() != 0 || o.ResourceVersion() != 4 {
		t.Error("a Deleted event carries more than namespace, name and resourceVersion")
	}
	root.Events(&ev, 2)
	ev.Object(&o)
	if o.Name() == nil {
		t.Error("an empty name is left absent, so the library cannot name its index")
	}

	buf = ob.objectList([]Object{obj("ns", "x", 1)}, 42)
	if string(buf[4:8]) != "BOBL" {
		t.Fatalf("identifier %q", buf[4:8])
	}
	lr := fb.GetRootAsObjectList(buf, 0)
	if lr.ResourceVersion() != 42 || lr.ObjectsLength() != 1 {
		t.Fatalf("ObjectList rv %d, %d objects", lr.ResourceVersion(), lr.ObjectsLength())
	}
	if buf = ob.objectList(nil, 7); fb.GetRootAsObjectList(buf, 0).ObjectsLength() != 0 {
		t.Fatal("empty list")
	}
}

// getOK is Cache.Get that fails the test unless the object is there.
func getOK(t testing.TB, c *Cache, ns, name string) ObjectView {
	t.Helper()
	v, ok, err := c.Get(ns, name)
	if err != nil || !ok {
		t.Fatalf("Get(%s/%s) = %v, %v; want the object", ns, name, ok, err)
	}
	return v
}

// sameObject fails unless v reads exactly as o, through every accessor.
func sameObject(t testing.TB, v ObjectView, o Object) {
	t.Helper()
	if v.Namespace() != o.Namespace || v.Name() != o.Name || v.ResourceVersion() != o.ResourceVersion {
		t.Fatalf("view %s/%s@%d; want %s/%s@%d", v.Namespace(), v.Name(), v.ResourceVersion(),
			o.Namespace, o.Name, o.ResourceVersion)
	}
	if !bytes.Equal(v.Payload(), o.Payload) {
		t.Fatalf("payload %d bytes %.40q; want %d bytes %.40q", len(v.Payload()), v.Payload(), len(o.Payload), o.Payload)
	}
	want := o.Labels
	if want == nil {
		want = map[string]string{}
	}
	if got := v.Labels(); got == nil || !maps.Equal(got, want) {
		t.Fatalf("labels %v; want %v", got, want)
	}
	if v.LabelsLen() != len(want) {
		t.Fatalf("LabelsLen %d; want %d", v.LabelsLen(), len(want))
	}
	for k, val := range want {
		if got, ok := v.Label(k); !ok || got != val {
			t.Fatalf("Label(%q) = %q, %v; want %q", k, got, ok, val)
		}
	}
	if got, ok := v.Label("no-such-label"); ok || got != "" {
		t.Fatalf("Label(no-such-label) = %q, %v", got, ok)
	}
	c := v.Object()
	if c.Namespace != o.Namespace || c.Name != o.Name || c.ResourceVersion != o.ResourceVersion ||
		!bytes.Equal(c.Payload, o.Payload) || !maps.Equal(c.Labels, want) {
		t.Fatalf("Object() = %+v; want %+v", c, o)
	}
}

func TestCache_GetReadsBackNamespaceNameLabelsAndPayloadAsUpserted(t *testing.T) {
	c := syncedCache(t)
	cases := []Object{
		{Namespace: "team-a", Name: "web-0", ResourceVersion: 7,
			Labels:  map[string]string{"app": "web", "tier": "frontend", "env": "prod", "empty": "", "example.com/owner": "x"},
			Payload: []byte(`{"spec":{"replicas":3}}`)},
		{Name: "cluster-scoped", ResourceVersion: 8, Labels: map[string]string{"k": "v"}, Payload: []byte{0, 1, 2, 0}},
		{Namespace: "ns", Name: "bare", ResourceVersion: 9}, // no labels, no payload
	}
	for _, o := range cases {
		upsert(t, c, o)
	}
	for _, o := range cases {
		sameObject(t, getOK(t, c, o.Namespace, o.Name), o)
	}
	if p := getOK(t, c, "ns", "bare").Payload(); p != nil {
		t.Fatalf("an object without a payload has Payload %q; want nil", p)
	}
	// Many labels: the most an object may have.
	many := Object{Namespace: "ns", Name: "many", ResourceVersion: 10, Labels: map[string]string{}}
	for i := range MaxLabels {
		many.Labels[fmt.Sprintf("k%03d", i)] = fmt.Sprintf("v%d", i)
	}
	upsert(t, c, many)
	sameObject(t, getOK(t, c, "ns", "many"), many)
}

func TestCache_GetOfAnAbsentOrDeletedObjectIsNotFoundWithoutError(t *testing.T) {
	c := syncedCache(t)
	upsert(t, c, obj("ns", "a", 3, "app", "web"))
	del(t, c, "ns", "a", 4)
	for _, k := range [][2]string{{"ns", "a"}, {"ns", "never"}} {
		v, ok, err := c.Get(k[0], k[1])
		if err != nil || ok {
			t.Fatalf("Get(%s/%s) = %v, %v; want not found", k[0], k[1], ok, err)
		}
		if v.Name() != "" || v.Payload() != nil || v.LabelsLen() != 0 || v.ResourceVersion() != 0 {
			t.Fatal("a not-found Get does not return the zero ObjectView")
		}
	}
	// Re-created after the delete: found again, at the new version.
	upsert(t, c, obj("ns", "a", 5, "app", "db"))
	sameObject(t, getOK(t, c, "ns", "a"), obj("ns", "a", 5, "app", "db"))
}

func TestCache_GetOfAnObjectLargerThanTheFirstBufferRetriesAtItsSize(t *testing.T) {
	c := syncedCache(t)
	// A fresh cache's first buffer is minGetSize bytes; an object "a" in the
	// cluster scope, without labels, needs gotHeader + 1 + payload bytes, so
	// these payloads give exactly the first buffer and one byte more.
	fits := bytes.Repeat([]byte{'f'}, minGetSize-gotHeader-1)
	over := bytes.Repeat([]byte{'o'}, minGetSize-gotHeader)
	upsert(t, c, Object{Name: "a", ResourceVersion: 2, Payload: fits})
	sameObject(t, getOK(t, c, "", "a"), Object{Name: "a", ResourceVersion: 2, Payload: fits})
	if n := c.getSize.Load(); n != 0 {
		t.Fatalf("an object that fit the first buffer changed its size to %d", n)
	}
	upsert(t, c, Object{Name: "a", ResourceVersion: 3, Payload: over})
	sameObject(t, getOK(t, c, "", "a"), Object{Name: "a", ResourceVersion: 3, Payload: over})
	if n := c.getSize.Load(); n != minGetSize+1 {
		t.Fatalf("first buffer size %d after a retry; want the size the object needed, %d", n, minGetSize+1)
	}

	// Large and small objects in turn: every Get reads its own object whole.
	large := obj("ns", "large", 4, "app", "web")
	large.Payload = make([]byte, 1<<20)
	for i := range large.Payload {
		large.Payload[i] = byte(i * 31)
	}
	small := obj("ns", "small", 5, "app", "db")
	upsert(t, c, large)
	upsert(t, c, small)
	for range 3 {
		sameObject(t, getOK(t, c, "ns", "large"), large)
		sameObject(t, getOK(t, c, "ns", "small"), small)
	}
	if n := c.getSize.Load(); n >= 1<<20 {
		t.Fatalf("first buffer size %d stays at the large object's after smaller Gets", n)
	}
	if p := getOK(t, c, "ns", "small").Payload(); cap(p) != len(p) {
		t.Fatalf("Payload cap %d > len %d: an append would write into the view", cap(p), len(p))
	}
}

func TestCache_GetViewKeepsItsObjectThroughLaterWritesDeletesReplaceAndClose(t *testing.T) {
	c := newCache(t, CacheOptions{})
	o := obj("ns", "a", 2, "app", "web", "tier", "t0")
	if err := c.Replace([]Object{o}, 2); err != nil {
		t.Fatal(err)
	}
	v := getOK(t, c, "ns", "a")
	name, payload := v.Name(), v.Payload()
	upsert(t, c, obj("ns", "a", 3, "app", "changed", "tier", "t1"))
	sameObject(t, getOK(t, c, "ns", "a"), obj("ns", "a", 3, "app", "changed", "tier", "t1"))
	del(t, c, "ns", "a", 4)
	if err := c.Replace([]Object{obj("ns", "b", 5)}, 5); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	sameObject(t, v, o)
	if name != "a" || string(payload) != string(o.Payload) {
		t.Fatalf("strings taken from the view changed: %q, %q", name, payload)
	}
	if _, _, err := c.Get("ns", "b"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
}

func TestCache_GetViewsShareNoBytesWithEachOther(t *testing.T) {
	c := syncedCache(t)
	o := obj("ns", "a", 2, "app", "web")
	upsert(t, c, o)
	v1, v2 := getOK(t, c, "ns", "a"), getOK(t, c, "ns", "a")
	p := v1.Payload()
	for i := range p {
		p[i] = 'X' // forbidden to callers; here it proves the copies are separate
	}
	sameObject(t, v2, o)
	sameObject(t, getOK(t, c, "ns", "a"), o)
}
