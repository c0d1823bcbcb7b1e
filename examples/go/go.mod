module github.com/berth-sched/berth/examples/go

go 1.26

require github.com/berth-sched/berth/bindings/go v0.0.0

require github.com/google/flatbuffers v2.0.8+incompatible // indirect

replace github.com/berth-sched/berth/bindings/go => ../../bindings/go
