//go:build cgo

package berth

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// TestGeneratedCodeIsUpToDate regenerates internal/fb from capi/berth.fbs the
// way `go generate` does and fails if the checked-in code differs.
func TestGeneratedCodeIsUpToDate(t *testing.T) {
	flatc, err := exec.LookPath("flatc")
	if err != nil {
		t.Skip("flatc not on PATH")
	}
	out := t.TempDir()
	cmd := exec.Command(flatc, "--go", "-o", out, "--go-namespace", "fb", "../../capi/berth.fbs")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("flatc: %v\n%s", err, msg)
	}
	list := func(dir string) []string {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	fresh, checkedIn := list(filepath.Join(out, "fb")), list(filepath.Join("internal", "fb"))
	if !slices.Equal(fresh, checkedIn) {
		t.Fatalf("internal/fb holds %q, flatc generates %q; run go generate", checkedIn, fresh)
	}
	for _, name := range fresh {
		want, err := os.ReadFile(filepath.Join(out, "fb", name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("internal", "fb", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("internal/fb/%s differs from flatc's output; run go generate", name)
		}
	}
}
