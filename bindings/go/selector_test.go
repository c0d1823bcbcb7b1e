//go:build cgo

package berth

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func mustParse(t testing.TB, text string) *Selector {
	t.Helper()
	s, err := ParseSelector(text)
	if err != nil {
		t.Fatalf("ParseSelector(%q): %v", text, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustMatch(t testing.TB, s *Selector, labels map[string]string) bool {
	t.Helper()
	ok, err := s.Matches(labels)
	if err != nil {
		t.Fatalf("%q.Matches(%v): %v", s, labels, err)
	}
	return ok
}

// The label sets of the Kubernetes labels documentation's examples.
var docLabelSets = map[string]map[string]string{
	"empty":         {},
	"prod-frontend": {"environment": "production", "tier": "frontend"},
	"prod-backend":  {"environment": "production", "tier": "backend"},
	"qa-customerA":  {"environment": "qa", "tier": "backend", "partition": "customerA"},
	"dev-nginx":     {"environment": "dev", "release": "stable", "app": "nginx"},
	"customerB":     {"partition": "customerB"},
}

func TestSelector_KubernetesDocExamplesParsePrintAndMatch(t *testing.T) {
	cases := []struct {
		text, canonical string
		matching        []string // names in docLabelSets; every other set must not match
	}{
		{"environment = production", "environment=production", []string{"prod-frontend", "prod-backend"}},
		{"tier != frontend", "tier!=frontend", []string{"empty", "prod-backend", "qa-customerA", "dev-nginx", "customerB"}},
		{"environment=production,tier!=frontend", "environment=production,tier!=frontend", []string{"prod-backend"}},
		{"environment in (production, qa)", "environment in (production,qa)", []string{"prod-frontend", "prod-backend", "qa-customerA"}},
		{"tier notin (frontend, backend)", "tier notin (backend,frontend)", []string{"empty", "dev-nginx", "customerB"}},
		{"partition", "partition", []string{"qa-customerA", "customerB"}},
		{"!partition", "!partition", []string{"empty", "prod-frontend", "prod-backend", "dev-nginx"}},
		{"partition in (customerA, customerB),environment!=qa", "environment!=qa,partition in (customerA,customerB)", []string{"customerB"}},
	}
	for _, c := range cases {
		t.Run(c.text, func(t *testing.T) {
			s := mustParse(t, c.text)
			if got := s.String(); got != c.canonical {
				t.Errorf("String() = %q; want %q", got, c.canonical)
			}
			for name, labels := range docLabelSets {
				want := false
				for _, m := range c.matching {
					want = want || m == name
				}
				if got := mustMatch(t, s, labels); got != want {
					t.Errorf("Matches(%s %v) = %v; want %v", name, labels, got, want)
				}
			}
		})
	}
}

func TestSelector_BadSelectorIsErrBadSelectorNamingTheByteOffset(t *testing.T) {
	cases := []struct{ what, text, want string }{
		{"trailing comma", "a=b,", "at byte 4:"},
		{"values without comma", "a in (x y)", "at byte 8:"},
		{"key with two slashes", "a/b/c=d", "at byte 0:"},
		{"key starting with '-'", "-a=b", "at byte 0:"},
		{"key over 63 bytes", "k" + strings.Repeat("a", 63) + "=v", "at byte 0:"},
		{"value starting with '-'", "x=-a", "at byte 2:"},
		{"leading comma", ",a", "at byte 0:"},
		{"unknown operator", "x nott in (y)", "at byte 2:"},
		{"non-integer for <", "x<a", "at byte 2:"},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			s, err := ParseSelector(c.text)
			if err == nil {
				s.Close()
				t.Fatalf("ParseSelector(%q) succeeded as %q", c.text, s)
			}
			if s != nil {
				t.Errorf("ParseSelector(%q) returned a selector with the error", c.text)
			}
			wantStatus(t, err, ErrBadSelector)
			if errors.Is(err, ErrInvalidName) || errors.Is(err, ErrInvalidArgument) {
				t.Errorf("error %v also matches another sentinel", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestSelector_EmptySelectorMatchesEverything(t *testing.T) {
	for _, text := range []string{"", "  ", "\t\n"} {
		s := mustParse(t, text)
		if s.String() != "" {
			t.Errorf("ParseSelector(%q).String() = %q; want \"\"", text, s)
		}
		for name, labels := range docLabelSets {
			if !mustMatch(t, s, labels) {
				t.Errorf("%q does not match %s", text, name)
			}
		}
	}
	var nilSel *Selector
	if ok, err := nilSel.Matches(map[string]string{"a": "b"}); !ok || err != nil {
		t.Fatalf("nil selector Matches = %v, %v; want true", ok, err)
	}
	if nilSel.String() != "" {
		t.Fatalf("nil selector String() = %q", nilSel.String())
	}
}

func TestSelector_CanonicalFormParsesToTheSameSelector(t *testing.T) {
	for _, text := range []string{
		"b in (z, y, x),a notin (c,b),!d,e,f>3,g<10,h==i,j=",
		"example.com/app=web, tier in (a,b) ,  x!=y",
	} {
		s := mustParse(t, text)
		again := mustParse(t, s.String())
		if again.String() != s.String() {
			t.Errorf("%q -> %q -> %q", text, s, again)
		}
		if strings.Contains(s.String(), ", ") || strings.Contains(s.String(), " ,") {
			t.Errorf("canonical %q keeps optional whitespace", s)
		}
	}
	if got := mustParse(t, "b=1,a=2").String(); got != "a=2,b=1" {
		t.Errorf("requirements not sorted by key: %q", got)
	}
}

func TestSelector_MatchesLabelSetsOfEverySize(t *testing.T) {
	// 0 labels, on-stack encoding (<= 16), Go-heap encoding (> 16) and more
	// than the C side converts on its stack (> 256).
	for _, n := range []int{0, 1, 16, 17, 256, 257, 1000} {
		labels := make(map[string]string, n)
		for i := range n {
			labels[fmt.Sprintf("k%d", i)] = fmt.Sprintf("v%d", i)
		}
		last := fmt.Sprintf("k%d=v%d", n-1, n-1)
		if n == 0 {
			last = "k0"
		}
		s := mustParse(t, last)
		if got := mustMatch(t, s, labels); got != (n > 0) {
			t.Errorf("%d labels: %q matches = %v; want %v", n, s, got, n > 0)
		}
		// Another value for the last key must not match: the binding passes
		// values, not only keys.
		if n > 0 {
			labels[fmt.Sprintf("k%d", n-1)] = "other"
			if mustMatch(t, s, labels) {
				t.Errorf("%d labels: %q matches a set where the value differs", n, s)
			}
		}
	}
}

func TestSelector_MatchesComparesLabelsUnvalidatedAndEmptyValues(t *testing.T) {
	labels := map[string]string{"x": "", "bad key!": "a b"}
	if !mustMatch(t, mustParse(t, "x="), labels) {
		t.Error(`"x=" does not match x=""`)
	}
	if !mustMatch(t, mustParse(t, "x"), labels) {
		t.Error(`"x" does not match a label x with an empty value`)
	}
	if mustMatch(t, mustParse(t, "!x"), labels) {
		t.Error(`"!x" matches a set with x`)
	}
	if !mustMatch(t, mustParse(t, "y!=a"), labels) {
		t.Error(`"y!=a" does not match a set without y`)
	}
}

func TestSelector_CloseIsIdempotentAndLaterMatchesIsErrClosed(t *testing.T) {
	s, err := ParseSelector("a in (x, y)")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	_, err = s.Matches(map[string]string{"a": "x"})
	if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "Matches") {
		t.Fatalf("Matches after Close: %v; want ErrClosed naming Matches", err)
	}
	if s.String() != "a in (x,y)" {
		t.Fatalf("String after Close = %q", s)
	}
	var nilSel *Selector
	if err := nilSel.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSelector_ConcurrentMatchesAndClose(t *testing.T) {
	for round := range 20 {
		s, err := ParseSelector("app=web,tier notin (db)")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				labels := map[string]string{"app": "web", "tier": fmt.Sprint("t", g)}
				for {
					ok, err := s.Matches(labels)
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil || !ok {
						t.Errorf("round %d: Matches = %v, %v", round, ok, err)
						return
					}
				}
			}()
		}
		close(start)
		s.Close()
		wg.Wait()
	}
}

// selectorVector is one line of tests/data/selector_vectors.inc, which
// tests/k8sref generates from Kubernetes' own labels package.
type selectorVector struct {
	input, canonical string
	parses           bool
	matches          string
}

var cString = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)

// loadK8sVectors parses the C++ include file of the Kubernetes vectors: C
// string literals whose escapes (\ooo octal, \n, ...) Go's Unquote reads.
func loadK8sVectors(t *testing.T) ([]map[string]string, []selectorVector) {
	t.Helper()
	raw, err := os.ReadFile("../../tests/data/selector_vectors.inc")
	if err != nil {
		t.Skipf("Kubernetes selector vectors not found: %v", err)
	}
	unquote := func(s string) string {
		u, err := strconv.Unquote(`"` + s + `"`)
		if err != nil {
			t.Fatalf("unquote %q: %v", s, err)
		}
		return u
	}
	var sets []map[string]string
	var vectors []selectorVector
	for line := range strings.Lines(string(raw)) {
		line = strings.TrimSpace(line)
		strs := cString.FindAllStringSubmatch(line, -1)
		idx := cString.FindAllStringIndex(line, -1)
		switch {
		case strings.HasPrefix(line, "LabelSet{"):
			if len(strs)%2 != 0 {
				t.Fatalf("odd label set line %q", line)
			}
			m := map[string]string{}
			for i := 0; i < len(strs); i += 2 {
				m[unquote(strs[i][1])] = unquote(strs[i+1][1])
			}
			sets = append(sets, m)
		case strings.HasPrefix(line, "SelectorVector{"):
			if len(strs) != 3 {
				t.Fatalf("vector line %q has %d strings", line, len(strs))
			}
			vectors = append(vectors, selectorVector{
				input:     unquote(strs[0][1]),
				parses:    strings.Contains(line[idx[0][1]:idx[1][0]], "true"),
				canonical: unquote(strs[1][1]),
				matches:   strs[2][1],
			})
		}
	}
	if len(sets) < 10 || len(vectors) < 100 {
		t.Fatalf("read only %d label sets and %d vectors", len(sets), len(vectors))
	}
	return sets, vectors
}

func TestSelector_AgreesWithKubernetesOnEveryReferenceVector(t *testing.T) {
	sets, vectors := loadK8sVectors(t)
	valid := 0
	for _, v := range vectors {
		s, err := ParseSelector(v.input)
		if (err == nil) != v.parses {
			t.Errorf("ParseSelector(%q) error = %v; Kubernetes parses it: %v", v.input, err, v.parses)
			if s != nil {
				s.Close()
			}
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrBadSelector) || !strings.Contains(err.Error(), "at byte ") {
				t.Errorf("ParseSelector(%q) error %v; want ErrBadSelector with a byte offset", v.input, err)
			}
			continue
		}
		valid++
		if s.String() != v.canonical {
			t.Errorf("ParseSelector(%q).String() = %q; Kubernetes prints %q", v.input, s, v.canonical)
		}
		if len(v.matches) != len(sets) {
			t.Fatalf("vector %q has %d match flags for %d sets", v.input, len(v.matches), len(sets))
		}
		for i, labels := range sets {
			if got := mustMatch(t, s, labels); got != (v.matches[i] == '1') {
				t.Errorf("%q.Matches(%v) = %v; Kubernetes says %c", v.input, labels, got, v.matches[i])
			}
		}
		s.Close()
	}
	if valid < 100 {
		t.Fatalf("only %d vectors parsed", valid)
	}
}
