module github.com/berth-sched/berth/bindings/go

go 1.24.0

require github.com/google/flatbuffers v2.0.8+incompatible

require golang.org/x/sync v0.19.0
