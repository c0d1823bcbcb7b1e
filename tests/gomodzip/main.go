// Command gomodzip publishes one version of a module from a directory into a
// file-system module proxy (GOPROXY=file://<out>): <path>/@v/list, .info,
// .mod and .zip, laid out and zipped as the Go module proxy protocol says.
// The zip is made by golang.org/x/mod/zip.CreateFromDir, the code the go
// command uses, so it holds what a module zip would: no nested modules or
// vendor/, paths prefixed <path>@<version>/, size limits checked.
//
//	go run . -path github.com/x/y/sub -version v1.2.3 -dir ../../sub -out /tmp/proxy
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/zip"
)

func main() {
	modPath := flag.String("path", "", "module path")
	version := flag.String("version", "", "version (vX.Y.Z)")
	dir := flag.String("dir", "", "module root directory (holds go.mod)")
	out := flag.String("out", "", "proxy root directory")
	flag.Parse()
	if *modPath == "" || *version == "" || *dir == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	log.SetFlags(0)
	log.SetPrefix("gomodzip: ")

	m := module.Version{Path: *modPath, Version: *version}
	if err := module.Check(m.Path, m.Version); err != nil {
		log.Fatal(err)
	}
	if semver.Canonical(m.Version) != m.Version {
		log.Fatalf("%s is not a canonical semantic version", m.Version)
	}
	gomod, err := os.ReadFile(filepath.Join(*dir, "go.mod"))
	if err != nil {
		log.Fatal(err)
	}
	if got := modfile.ModulePath(gomod); got != m.Path {
		log.Fatalf("%s/go.mod declares module %q, not %q", *dir, got, m.Path)
	}
	esc, err := module.EscapePath(m.Path)
	if err != nil {
		log.Fatal(err)
	}
	escVer, err := module.EscapeVersion(m.Version)
	if err != nil {
		log.Fatal(err)
	}
	vdir := filepath.Join(*out, filepath.FromSlash(esc), "@v")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		log.Fatal(err)
	}
	base := filepath.Join(vdir, escVer)

	// What CreateFromDir will take and leave out (vendor/, nested modules,
	// VCS directories), for the log.
	dc, err := zip.CheckDir(*dir)
	if err != nil {
		log.Fatal(err)
	}

	zf, err := os.Create(base + ".zip")
	if err != nil {
		log.Fatal(err)
	}
	if err := zip.CreateFromDir(zf, m, *dir); err != nil {
		log.Fatal(err)
	}
	if err := zf.Close(); err != nil {
		log.Fatal(err)
	}
	// What the go command checks when it extracts the zip.
	cf, err := zip.CheckZip(m, base+".zip")
	if err != nil {
		log.Fatal(err)
	}
	if err := cf.Err(); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(base+".mod", gomod, 0o644); err != nil {
		log.Fatal(err)
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{m.Version, time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(base+".info", append(info, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
	var versions []string
	if old, err := os.ReadFile(filepath.Join(vdir, "list")); err == nil {
		versions = strings.Fields(string(old))
	}
	if !slices.Contains(versions, m.Version) {
		versions = append(versions, m.Version)
	}
	semver.Sort(versions)
	if err := os.WriteFile(filepath.Join(vdir, "list"), []byte(strings.Join(versions, "\n")+"\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s@%s: %d files in the zip (%d omitted), into %s\n", m.Path, m.Version, len(cf.Valid), len(dc.Omitted), vdir)
}
