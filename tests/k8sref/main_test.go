package main

import (
	"bytes"
	"os"
	"testing"
)

// The committed vectors must be exactly what Kubernetes' parser says today.
func TestVectorsAreUpToDate(t *testing.T) {
	var b bytes.Buffer
	write(&b)
	committed, err := os.ReadFile("../data/selector_vectors.inc")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), committed) {
		t.Fatal("tests/data/selector_vectors.inc is stale: cd tests/k8sref && go run . > ../data/selector_vectors.inc")
	}
}
