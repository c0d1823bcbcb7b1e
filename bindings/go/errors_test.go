//go:build cgo

package berth

import (
	"errors"
	"strings"
	"testing"
)

func TestError_IsMatchesSentinelOfSameStatusOnly(t *testing.T) {
	err := error(&Error{Status: statusNotFound, Message: `pool "x" does not exist`})
	if !errors.Is(err, ErrNotFound) {
		t.Fatal("errors.Is(NOT_FOUND error, ErrNotFound) = false")
	}
	for _, other := range []error{ErrInvalidArgument, ErrInvalidName, ErrBadBuffer, ErrNoMemory, ErrInternal, ErrNotSynced, ErrBadSelector, ErrTimeout, ErrClosed} {
		if errors.Is(err, other) {
			t.Errorf("errors.Is(NOT_FOUND error, %v) = true", other)
		}
	}
	var be *Error
	if !errors.As(err, &be) || be.Message != `pool "x" does not exist` {
		t.Fatalf("errors.As = %+v", be)
	}
	if got := err.Error(); got != `berth: BERTH_ERR_NOT_FOUND: pool "x" does not exist` {
		t.Fatalf("Error() = %q", got)
	}
	if got := StatusName(42); got != "BERTH_UNKNOWN_STATUS(42)" {
		t.Fatalf("StatusName(42) = %q", got)
	}
}

func TestError_NewStatusesHaveNamesAndSentinels(t *testing.T) {
	cases := []struct {
		status   int32
		name     string
		sentinel error
	}{
		{8, "BERTH_ERR_NOT_SYNCED", ErrNotSynced},
		{9, "BERTH_ERR_BAD_SELECTOR", ErrBadSelector},
		{10, "BERTH_ERR_TIMEOUT", ErrTimeout},
		{11, "BERTH_ERR_BAD_REGION", ErrBadRegion},
		{12, "BERTH_ERR_BAD_HANDLE", ErrBadHandle},
		{13, "BERTH_ERR_FORKED", ErrForked},
	}
	for _, c := range cases {
		if got := StatusName(c.status); got != c.name {
			t.Errorf("StatusName(%d) = %q; want %q", c.status, got, c.name)
		}
		err := error(&Error{Status: c.status, Message: "at byte 3: x"})
		if !errors.Is(err, c.sentinel) {
			t.Errorf("errors.Is(status %d, %v) = false", c.status, c.sentinel)
		}
		for _, other := range []error{ErrInvalidArgument, ErrInvalidName, ErrNotFound, ErrBadBuffer, ErrInternal, ErrClosed} {
			if errors.Is(err, other) {
				t.Errorf("errors.Is(status %d, %v) = true", c.status, other)
			}
		}
	}
	if errors.Is(ErrNotSynced, ErrBadSelector) || errors.Is(ErrTimeout, ErrBadSelector) ||
		errors.Is(ErrTimeout, ErrNotSynced) || errors.Is(ErrBadRegion, ErrTimeout) {
		t.Error("sentinels of different statuses match each other")
	}
	if HeaderABIVersion < 300 {
		t.Errorf("HeaderABIVersion = %d; limiters and buckets need ABI 0.3", HeaderABIVersion)
	}
}

func TestABIVersion_MajorMatchesHeader(t *testing.T) {
	if got := ABIVersion(); got/10000 != HeaderABIVersion/10000 {
		t.Fatalf("ABIVersion() = %d; header is %d", got, HeaderABIVersion)
	}
	if string(idBatch) != "BPKB" || idSnapshot != "BPSN" || idNodeStats != "BPNS" ||
		string(idEventBatch) != "BEVB" || string(idObjectList) != "BOBL" {
		t.Fatalf("identifiers %q %q %q %q %q", idBatch, idSnapshot, idNodeStats, idEventBatch, idObjectList)
	}
	if HeaderABIVersion < 200 {
		t.Fatalf("HeaderABIVersion = %d; the cache needs ABI 0.2", HeaderABIVersion)
	}
}

func TestABIVersion_OtherMajorIsRejected(t *testing.T) {
	if err := compatibleABI(10203, 10000); err != nil {
		t.Fatalf("1.2.3 library for 1.0.0 header: %v", err)
	}
	err := compatibleABI(20000, 10900)
	if !errors.Is(err, ErrABIMismatch) || !strings.Contains(err.Error(), "2.0.0") || !strings.Contains(err.Error(), "1.9.0") {
		t.Fatalf("2.0.0 library for 1.9.0 header: %v; want ErrABIMismatch naming both", err)
	}
}

func TestABIVersion_OlderLibraryOfSameMajorIsRejected(t *testing.T) {
	if err := compatibleABI(100, 200); !errors.Is(err, ErrABIMismatch) {
		t.Fatalf("0.1.0 library for 0.2.0 header: %v; want ErrABIMismatch", err)
	}
}

func TestBadInput_IsInvalidNameWithMessage(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	cases := []struct {
		what string
		pool string
		key  Key
	}{
		{"empty pool", "", Key{Name: "a"}},
		{"pool over 512 bytes", long(MaxPoolLen + 1), Key{Name: "a"}},
		{"pool invalid UTF-8", "p\xc3", Key{Name: "a"}},
		{"pool with NUL", "p\x00q", Key{Name: "a"}},
		{"empty name", "p", Key{Name: ""}},
		{"name over 253 bytes", "p", Key{Name: long(MaxNameLen + 1)}},
		{"name invalid UTF-8", "p", Key{Name: "\xed\xa0\x80"}}, // a surrogate
		{"name with NUL", "p", Key{Name: "a\x00"}},
		{"namespace over 63 bytes", "p", Key{Namespace: long(MaxNamespaceLen + 1), Name: "a"}},
		{"namespace invalid UTF-8", "p", Key{Namespace: "\xff", Name: "a"}},
		{"namespace with NUL", "p", Key{Namespace: "\x00", Name: "a"}},
		{"node over 253 bytes", "p", Key{Name: "a", Node: long(MaxNodeLen + 1)}},
		{"node invalid UTF-8", "p", Key{Name: "a", Node: "n\x80"}},
		{"node with NUL", "p", Key{Name: "a", Node: "\x00"}},
	}
	e := newEngine(t)
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			_, err := e.Add(c.pool, c.key)
			wantStatus(t, err, ErrInvalidName)
			var be *Error
			if !errors.As(err, &be) || be.Status != statusInvalidName || be.Message == "" {
				t.Fatalf("error %#v: want status 3 with the library's message", err)
			}
			_, err = e.AddBatch(c.pool, []Key{c.key})
			wantStatus(t, err, ErrInvalidName)
			_, err = e.Update(c.pool, c.key)
			wantStatus(t, err, ErrInvalidName)
		})
	}
	if _, err := e.Stats("p"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a failed Add created the pool: Stats err = %v", err)
	}
}

func TestBadInput_NamesAtTheirLimitsAreAccepted(t *testing.T) {
	e := newEngine(t)
	pool := strings.Repeat("p", MaxPoolLen)
	// Multi-byte UTF-8 filling the limits exactly (3 bytes per rune).
	k := Key{
		Namespace: strings.Repeat("€", MaxNamespaceLen/3),
		Name:      strings.Repeat("€", MaxNameLen/3) + "x",
		Node:      strings.Repeat("n", MaxNodeLen),
		Ready:     true,
	}
	if len(k.Namespace) != MaxNamespaceLen || len(k.Name) != MaxNameLen {
		t.Fatalf("bad fixture lengths %d %d", len(k.Namespace), len(k.Name))
	}
	if ins, err := e.Add(pool, k); err != nil || !ins {
		t.Fatalf("Add at limits = %v, %v", ins, err)
	}
	h, ok, err := e.PopSpread(pool)
	if err != nil || !ok || h.Key != k {
		t.Fatalf("PopSpread = %+v, %v, %v; want %+v", h.Key, ok, err, k)
	}
	if n, err := e.AddBatch(pool, []Key{k}); err != nil || n != 1 {
		t.Fatalf("AddBatch at limits = %d, %v", n, err)
	}
}

func TestBadInput_EveryPoolCallRejectsEmptyPoolName(t *testing.T) {
	e := newEngine(t)
	calls := map[string]func() error{
		"Remove":     func() error { _, err := e.Remove("", "ns", "a"); return err },
		"RemovePool": func() error { _, err := e.RemovePool(""); return err },
		"PopFIFO":    func() error { _, _, err := e.PopFIFO(""); return err },
		"PopSpread":  func() error { _, _, err := e.PopSpread(""); return err },
		"PutBack":    func() error { _, err := e.PutBack("", HandedOut{Key: Key{Name: "a"}}); return err },
		"Stats":      func() error { _, err := e.Stats(""); return err },
		"Snapshot":   func() error { _, err := e.Snapshot(""); return err },
		"NodeStats":  func() error { _, err := e.NodeStats(""); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%s(\"\") error = %v; want ErrInvalidName", name, err)
		}
	}
}

func TestUnknownPool_IsNotFound(t *testing.T) {
	e := newEngine(t)
	calls := map[string]func() error{
		"PopFIFO":   func() error { _, _, err := e.PopFIFO("nope"); return err },
		"PopSpread": func() error { _, _, err := e.PopSpread("nope"); return err },
		"PutBack":   func() error { _, err := e.PutBack("nope", HandedOut{Key: Key{Name: "a"}, Token: 1}); return err },
		"Stats":     func() error { _, err := e.Stats("nope"); return err },
		"Snapshot":  func() error { _, err := e.Snapshot("nope"); return err },
		"NodeStats": func() error { _, err := e.NodeStats("nope"); return err },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s on unknown pool: error = %v; want ErrNotFound", name, err)
			continue
		}
		if !strings.Contains(err.Error(), "BERTH_ERR_NOT_FOUND") {
			t.Errorf("%s: message %q does not name the status", name, err)
		}
	}
}

func TestClose_IsIdempotent(t *testing.T) {
	e, err := NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := e.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	var nilEngine *Engine
	if err := nilEngine.Close(); err != nil {
		t.Fatalf("nil Close: %v", err)
	}
}

func TestClosedEngine_EveryMethodReturnsErrClosed(t *testing.T) {
	e, err := NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, e, "p", ready("a", "n1"))
	h, _, _ := e.PopFIFO("p")
	mustAdd(t, e, "p", ready("b", "n1"))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	var nilEngine *Engine
	for _, eng := range []*Engine{e, nilEngine} {
		calls := map[string]func() error{
			"Add":        func() error { _, err := eng.Add("p", ready("c", "n1")); return err },
			"AddBatch":   func() error { _, err := eng.AddBatch("p", []Key{ready("c", "n1")}); return err },
			"Update":     func() error { _, err := eng.Update("p", ready("b", "n2")); return err },
			"Remove":     func() error { _, err := eng.Remove("p", "ns", "b"); return err },
			"RemovePool": func() error { _, err := eng.RemovePool("p"); return err },
			"PopFIFO":    func() error { _, _, err := eng.PopFIFO("p"); return err },
			"PopSpread":  func() error { _, _, err := eng.PopSpread("p"); return err },
			"PutBack":    func() error { _, err := eng.PutBack("p", h); return err },
			"Stats":      func() error { _, err := eng.Stats("p"); return err },
			"Snapshot":   func() error { _, err := eng.Snapshot("p"); return err },
			"NodeStats":  func() error { _, err := eng.NodeStats("p"); return err },
		}
		for name, call := range calls {
			err := call()
			if !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close: error = %v; want ErrClosed", name, err)
			} else if !strings.Contains(err.Error(), name) {
				t.Errorf("%s after Close: error %q does not name the method", name, err)
			}
		}
	}
}

func TestError_ClosedObjectsMatchErrClosedAndErrBadHandle(t *testing.T) {
	e, err := NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = e.Stats("p")
	if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrBadHandle) {
		t.Fatalf("Stats after Close: %v; want ErrClosed and ErrBadHandle", err)
	}
	if errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Stats after Close matches ErrInvalidArgument: %v", err)
	}
}
