// Command k8sref writes the label-selector test vectors of Berth's C++ tests
// from Kubernetes' own implementation (k8s.io/apimachinery/pkg/labels), so
// the parser and matcher are checked against the real thing, not against our
// reading of it. Regenerate with:
//
//	cd tests/k8sref && go run . > ../data/selector_vectors.inc
//
// TestVectorsAreUpToDate fails when the committed file differs.
package main

import (
	"bufio"
	"fmt"
	"io"
	"math/rand"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// Every example of the Kubernetes documentation on labels and selectors, the
// cases of apimachinery's selector_test.go, and edge cases.
var handWritten = []string{
	// kubernetes.io/docs/concepts/overview/working-with-objects/labels/
	"environment = production",
	"tier != frontend",
	"environment=production,tier!=frontend",
	"environment in (production, qa)",
	"tier notin (frontend, backend)",
	"partition",
	"!partition",
	"partition in (customerA, customerB),environment!=qa",
	"environment=production,tier=frontend",
	"environment in (production),tier in (frontend)",
	"environment,environment notin (frontend)",
	"app=nginx",
	"release=stable,environment=dev",
	"example.com/app=web",
	"app.kubernetes.io/name=mysql",
	// apimachinery selector_test.go
	"x=a,y=b,z=c", "", "x!=a,y=b", "x=", "x= ", "x=,z= ", "x= ,z= ", "!x", "x>1", "x>1,z<5",
	"x=a||y=b", "x==a==b", "!x=a", "x<a", "x=a,a=x", "a=x,x=a", "notin=in",
	"\rx", "this-is-a-dns.domain.com/key-with-dash",
	"this-is-another-dns.domain.com/key-with-dash in (so,what)",
	"0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
	"foo  in\t (abc)", "x notin\n (abc)", "x  notin\t\t\t(abc,def)", "x in (abc,def)",
	"x in (abc,)", "x in ()", "x notin (abc,def),bar,z in (),w", "x,y in (a)", "x=a,y!=b",
	"x=a,y!=b,z in (h,i,j)", "x,y", ",x,y", "x nott in (y)", "x notin ( )", "x notin (, a)",
	"a in (xyz),", "a in (xyz)b notin ()", "a ", "a in (x,y,notin, z,in)", "a in (xyz abc)",
	"a notin(", "a (", "(",
	// edge cases: empty and whitespace, trailing and doubled commas, empty
	// values, operators without values, keys and values at their limits
	" ", "\t\n", "a,", "a,,b", ",", "a=b,", "a==b", "a!=", "a in (,)", "a in (a,,b)",
	"a in (,,)", "a in a", "a in (a", "a in (a))", "a notin", "a in", "a=b=c", "a!b", "!!a", "! a",
	"!a,!b", "a=(b)", "a>", "a<", "a>1.5", "a>-1", "a>+1", "a>05", "a>9223372036854775807",
	"a>9223372036854775808", "a<0", "in=notin", "in", "notin", "in in (in)", "a in (in,notin)",
	"x=a b", "x=a, y=b", " x = a , y != b ", "x\u00a0=a", "x=a\u00a0", "é=a", "a=é",
	"a/b=c", "a/b/c=d", "/a=b", "a/=b", "A.B/c=d", "a.b/C=d", "-a=b", "a-=b", "a_b.c-d=e",
	"a=-b", "a=b-", "a=b_c.d-e", "_a=b",
	"k" + strings.Repeat("a", 62) + "=v",
	"k" + strings.Repeat("a", 63) + "=v",
	"k=v" + strings.Repeat("a", 62),
	"k=v" + strings.Repeat("a", 63),
	strings.Repeat("p", 253) + "/k=v",
	strings.Repeat("p", 254) + "/k=v",
	strings.Repeat("a.", 126) + "a/k=v",
	"app=x,tier in (a,b)", "app=x,tier notin (a,b),!canary,version>2",
}

// Label sets every parsed selector is matched against.
var labelSets = []map[string]string{
	{},
	{"x": "a"}, {"x": "b"}, {"x": ""}, {"y": ""}, {"x": "a", "y": "b"}, {"x": "abc", "z": "c"},
	{"x": "2"}, {"x": "0"}, {"x": "-3"}, {"x": "05"}, {"x": "v2"}, {"z": "2"}, {"a": "x", "x": "a"},
	{"environment": "production", "tier": "frontend"},
	{"environment": "qa", "tier": "backend", "partition": "customerA"},
	{"environment": "dev", "release": "stable", "app": "nginx"},
	{"partition": "customerB"}, {"example.com/app": "web"}, {"app.kubernetes.io/name": "mysql"},
	{"app": "x", "tier": "a"}, {"app": "x", "tier": "c", "version": "3"},
	{"app": "x", "tier": "b", "canary": "true", "version": "7"},
	{"in": "notin", "notin": "in"}, {"a": "in"}, {"bar": "1", "w": "2", "z": ""},
	{"foo": "abc", "so": "what"}, {"0.1.2.domain/99": "tick.tack.clock"},
	{"this-is-another-dns.domain.com/key-with-dash": "so"},
}

// Random strings over the selector's alphabet: most are invalid, many are
// valid and unusual; both sides must agree on which is which.
func randomSelectors(n int, seed int64) []string {
	r := rand.New(rand.NewSource(seed))
	pieces := []string{
		"a", "x", "y", "app", "tier", "in", "notin", "k8s.io/app", "b.c/d", "A", "1", "05", "-1",
		"=", "==", "!=", "!", ">", "<", "(", ")", ",", " ", "  ", "\t", "a-b", "a_b", "a.b", "-", "_",
		".", "/", "é", "qa", "prod", "v1", "", "in (", "notin (", ",)", "(,",
	}
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		var b strings.Builder
		for j, k := 0, 1+r.Intn(9); j < k; j++ {
			b.WriteString(pieces[r.Intn(len(pieces))])
		}
		out = append(out, b.String())
	}
	return out
}

// cString writes s as a C string literal, every byte outside [A-Za-z0-9 ]
// as a three-digit octal escape.
func cString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' ' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "\\%03o", c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func write(w io.Writer) {
	fmt.Fprintln(w, "// Generated by tests/k8sref from k8s.io/apimachinery/pkg/labels; do not edit.")
	fmt.Fprintln(w, "// Regenerate: cd tests/k8sref && go run . > ../data/selector_vectors.inc")
	fmt.Fprintln(w, "#define BERTH_K8S_LABEL_SETS \\")
	for i, set := range labelSets {
		pairs := make([]string, 0, len(set))
		for k, v := range set {
			pairs = append(pairs, "{"+cString(k)+", "+cString(v)+"}")
		}
		// map order is random: sort for a stable file
		sortStrings(pairs)
		sep := ", \\"
		if i == len(labelSets)-1 {
			sep = ""
		}
		fmt.Fprintf(w, "  LabelSet{%s}%s\n", strings.Join(pairs, ", "), sep)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "// {input, parses, canonical String(), one '1'/'0' per label set: Matches}")
	fmt.Fprintln(w, "#define BERTH_K8S_SELECTOR_VECTORS \\")
	cases := append(append([]string{}, handWritten...), randomSelectors(3000, 1)...)
	for i, in := range cases {
		sel, err := labels.Parse(in)
		str, matches := "", ""
		if err == nil {
			str = sel.String()
			for _, set := range labelSets {
				if sel.Matches(labels.Set(set)) {
					matches += "1"
				} else {
					matches += "0"
				}
			}
		}
		sep := ", \\"
		if i == len(cases)-1 {
			sep = ""
		}
		fmt.Fprintf(w, "  SelectorVector{%s, %t, %s, %q}%s\n", cString(in), err == nil, cString(str), matches, sep)
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func main() {
	w := bufio.NewWriter(os.Stdout)
	write(w)
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
