// Engine: pools of keys (berth_engine, berth_pool_*).

#include <string>
#include <utility>
#include <vector>

#include <cstring>

#include "common.h"
#include "flatbuf.h"

namespace berth_py {
namespace {

// Builds a PoolKey without going through its Python __new__: a NamedTuple is a
// tuple subclass, and tp_alloc + filling the items is what tuple.__new__ does
// for subclasses.
py::object make_pool_key(PyObject* ns, PyObject* name, PyObject* node, bool ready,
                         uint64_t seq, uint64_t token) {
  // Steal the three strings first so they are released on every path.
  py::object ons = py::reinterpret_steal<py::object>(ns);
  py::object oname = py::reinterpret_steal<py::object>(name);
  py::object onode = py::reinterpret_steal<py::object>(node);
  if (!ns || !name || !node) throw py::error_already_set();
  PyObject* oseq = PyLong_FromUnsignedLongLong(seq);
  if (!oseq) throw py::error_already_set();
  PyObject* otoken = PyLong_FromUnsignedLongLong(token);
  if (!otoken) {
    Py_DECREF(oseq);
    throw py::error_already_set();
  }
  PyObject* t = g.pool_key->tp_alloc(g.pool_key, kPoolKeyFields);
  if (!t) {
    Py_DECREF(oseq);
    Py_DECREF(otoken);
    throw py::error_already_set();
  }
  PyTuple_SET_ITEM(t, 0, ons.release().ptr());
  PyTuple_SET_ITEM(t, 1, oname.release().ptr());
  PyTuple_SET_ITEM(t, 2, onode.release().ptr());
  PyObject* r = ready ? Py_True : Py_False;
  Py_INCREF(r);
  PyTuple_SET_ITEM(t, 3, r);
  PyTuple_SET_ITEM(t, 4, oseq);
  PyTuple_SET_ITEM(t, 5, otoken);
  return py::reinterpret_steal<py::object>(t);
}

py::object make_pool_key(const berth_pool_key& k) {
  if (k.namespace_len > sizeof(k.namespace_) || k.name_len > sizeof(k.name) ||
      k.node_len > sizeof(k.node)) {
    raise_status(BERTH_ERR_INTERNAL, "berth_pool_key with out-of-range lengths");
  }
  return make_pool_key(decode(k.namespace_, k.namespace_len), decode(k.name, k.name_len),
                       decode(k.node, k.node_len), k.ready != 0, k.seq, k.token);
}

// ---------------------------------------------------------------------------
// Engine
// ---------------------------------------------------------------------------

class Engine : public Handle<berth_engine, &berth_engine_free> {
 public:
  Engine() : Handle("engine") {
    berth_engine* e = nullptr;
    Failure f;
    {
      NoGil nogil;
      berth_status st = berth_engine_new(&e);
      if (is_failure(st)) f.capture(st);
    }
    if (is_failure(f.status)) raise_failure(f);
    adopt(e);
  }

  // berth_pool_add and berth_pool_update take the same arguments.
  using AddFn = berth_status (*)(int*, berth_engine*, const char*, size_t, const char*, size_t,
                                 const char*, size_t, const char*, size_t, int);

  bool add_like(AddFn fn, py::handle pool, py::handle ns, py::handle name, py::handle node,
                py::handle ready) {
    Utf8 p = utf8(pool.ptr(), "pool");
    Utf8 a = utf8(ns.ptr(), "namespace");
    Utf8 b = utf8(name.ptr(), "name");
    Utf8 c = utf8(node.ptr(), "node");
    int r = as_ready(ready.ptr());
    int flag = 0;
    call([&](berth_engine* e) {
      return fn(&flag, e, p.data, p.size, a.data, a.size, b.data, b.size, c.data, c.size, r);
    });
    return flag != 0;
  }

  bool add(py::handle pool, py::handle ns, py::handle name, py::handle node, py::handle ready) {
    return add_like(&berth_pool_add, pool, ns, name, node, ready);
  }

  bool update(py::handle pool, py::handle ns, py::handle name, py::handle node,
              py::handle ready) {
    return add_like(&berth_pool_update, pool, ns, name, node, ready);
  }

  size_t add_batch(py::handle pool, py::handle keys);

  bool remove(py::handle pool, py::handle ns, py::handle name) {
    Utf8 p = utf8(pool.ptr(), "pool");
    Utf8 a = utf8(ns.ptr(), "namespace");
    Utf8 b = utf8(name.ptr(), "name");
    int removed = 0;
    call([&](berth_engine* e) {
      return berth_pool_remove(&removed, e, p.data, p.size, a.data, a.size, b.data, b.size);
    });
    return removed != 0;
  }

  bool remove_pool(py::handle pool) {
    Utf8 p = utf8(pool.ptr(), "pool");
    int removed = 0;
    call([&](berth_engine* e) { return berth_pool_remove_pool(&removed, e, p.data, p.size); });
    return removed != 0;
  }

  template <bool kSpread>
  py::object pop(py::handle pool) {
    Utf8 p = utf8(pool.ptr(), "pool");
    berth_pool_key k;
    berth_status st = call([&](berth_engine* e) {
      return kSpread ? berth_pool_pop_spread(&k, e, p.data, p.size)
                     : berth_pool_pop_fifo(&k, e, p.data, p.size);
    });
    if (st == BERTH_EMPTY) return py::none();
    return make_pool_key(k);
  }

  bool put_back(py::handle pool, py::handle key) {
    Utf8 p = utf8(pool.ptr(), "pool");
    PyObject* k = key.ptr();
    if (!PyObject_TypeCheck(k, g.pool_key) || PyTuple_GET_SIZE(k) != kPoolKeyFields) {
      raise_type("key", "a berth.PoolKey", k);
    }
    Utf8 a = utf8(PyTuple_GET_ITEM(k, 0), "key.namespace");
    Utf8 b = utf8(PyTuple_GET_ITEM(k, 1), "key.name");
    const uint64_t token = as_u64(PyTuple_GET_ITEM(k, 5), Arg{"key.token"});
    int restored = 0;
    call([&](berth_engine* e) {
      return berth_pool_put_back(&restored, e, p.data, p.size, a.data, a.size, b.data, b.size,
                                 token);
    });
    return restored != 0;
  }

  py::object stats(py::handle pool) {
    Utf8 p = utf8(pool.ptr(), "pool");
    berth_pool_stats s{};
    call([&](berth_engine* e) { return berth_pool_get_stats(&s, e, p.data, p.size); });
    return make_tuple_type(g.pool_stats, s.keys, s.ready_keys, s.scheduled_keys, s.nodes,
                           s.put_back_records);
  }

  py::list snapshot(py::handle pool);
  py::dict node_stats(py::handle pool);
  py::list pools();
};

// Fetches a buffer with fn(berth_buffer**, berth_engine*) and reads its bytes.
template <class Fn>
void fetch_buffer(Engine& engine, Buffer& buf, Fn&& fn) {
  engine.call([&](berth_engine* e) {
    return buf.fetch([&](berth_buffer** out) { return fn(out, e); });
  });
}

py::list Engine::snapshot(py::handle pool) {
  Utf8 p = utf8(pool.ptr(), "pool");
  Buffer buf;
  fetch_buffer(*this, buf, [&](berth_buffer** out, berth_engine* e) {
    return berth_pool_snapshot(out, e, p.data, p.size);
  });
  auto* root = verified_root<berth::fb::PoolSnapshot>(buf, BERTH_FB_POOL_SNAPSHOT_ID,
                                                      "PoolSnapshot");
  auto* keys = root->keys();
  const size_t n = keys ? keys->size() : 0;
  py::list out(n);
  for (size_t i = 0; i < n; ++i) {
    const auto* k = keys->Get(static_cast<flatbuffers::uoffset_t>(i));
    py::object key = make_pool_key(fb_str(k->namespace_()), fb_str(k->name()),
                                   fb_str(k->node()), k->ready(), k->seq(), 0);
    PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), key.release().ptr());
  }
  return out;
}

py::list Engine::pools() {
  Buffer buf;
  fetch_buffer(*this, buf, [&](berth_buffer** out, berth_engine* e) {
    return berth_engine_list_pools(out, e);
  });
  py::list out;
  const char* p = reinterpret_cast<const char*>(buf.data);
  const char* end = p + buf.size;
  while (p < end) {  // "a\0b\0": every name ends with a NUL byte
    const char* nul = static_cast<const char*>(std::memchr(p, '\0', static_cast<size_t>(end - p)));
    if (nul == nullptr) raise_bad_output("pool list");
    auto name = py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(p, nul - p, "strict"));
    if (!name) throw py::error_already_set();
    out.append(name);
    p = nul + 1;
  }
  return out;
}

py::dict Engine::node_stats(py::handle pool) {
  Utf8 p = utf8(pool.ptr(), "pool");
  Buffer buf;
  fetch_buffer(*this, buf, [&](berth_buffer** out, berth_engine* e) {
    return berth_pool_node_stats(out, e, p.data, p.size);
  });
  auto* root = verified_root<berth::fb::PoolNodeStats>(buf, BERTH_FB_POOL_NODE_STATS_ID,
                                                       "PoolNodeStats");
  py::dict out;
  if (auto* nodes = root->nodes()) {
    for (const auto* ns : *nodes) {
      py::object node = py::reinterpret_steal<py::object>(fb_str(ns->node()));
      if (!node) throw py::error_already_set();
      out[node] = make_tuple_type(g.node_stat, node, ns->keys(), ns->ready_keys());
    }
  }
  return out;
}

// The four fields of one batch entry: a PoolKey, a (namespace, name, node,
// ready) tuple or list, or any object with those attributes. The fields are
// borrowed from the item (or from `holder`) and used before any Python code
// runs again.
struct BatchItem {
  py::object holder;  // owns the fields read as attributes
  PyObject* fields[4];
};

void read_batch_item(PyObject* item, Py_ssize_t index, BatchItem& out) {
  if (PyObject_TypeCheck(item, g.pool_key) && PyTuple_GET_SIZE(item) == kPoolKeyFields) {
    for (int i = 0; i < 4; ++i) out.fields[i] = PyTuple_GET_ITEM(item, i);
    return;
  }
  const bool sequence = PyTuple_Check(item) || PyList_Check(item);
  if (sequence && PySequence_Fast_GET_SIZE(item) == 4) {
    for (int i = 0; i < 4; ++i) out.fields[i] = PySequence_Fast_GET_ITEM(item, i);
    return;
  }
  if (!sequence) {
    static const char* const kAttrs[4] = {"namespace", "name", "node", "ready"};
    py::tuple t(4);
    int i = 0;
    for (; i < 4; ++i) {
      PyObject* v = or_park([&] { return PyObject_GetAttrString(item, kAttrs[i]); });
      if (!v) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) throw py::error_already_set();
        PyErr_Clear();
        break;
      }
      PyTuple_SET_ITEM(t.ptr(), i, v);
    }
    if (i == 4) {
      for (int j = 0; j < 4; ++j) out.fields[j] = PyTuple_GET_ITEM(t.ptr(), j);
      out.holder = std::move(t);
      return;
    }
  }
  throw py::type_error("keys[" + std::to_string(index) +
                       "] must be a berth.PoolKey or a (namespace, name, node, ready) tuple, "
                       "not " + Py_TYPE(item)->tp_name);
}


size_t Engine::add_batch(py::handle pool, py::handle keys) {
  Utf8 p = utf8(pool.ptr(), "pool");
  if (PyUnicode_Check(keys.ptr()) || PyBytes_Check(keys.ptr())) {
    raise_type("keys", "an iterable of keys", keys.ptr());
  }
  flatbuffers::FlatBufferBuilder fbb(1024);
  std::vector<flatbuffers::Offset<berth::fb::PoolKey>> offsets;
  Py_ssize_t hint = or_park([&] { return PyObject_LengthHint(keys.ptr(), 0); });
  if (hint < 0) throw py::error_already_set();
  offsets.reserve(static_cast<size_t>(hint));

  auto iter = py::reinterpret_steal<py::object>(or_park([&] { return PyObject_GetIter(keys.ptr()); }));
  if (!iter) throw py::error_already_set();
  Py_ssize_t index = 0;
  while (PyObject* raw = or_park([&] { return PyIter_Next(iter.ptr()); })) {
    py::object item = py::reinterpret_steal<py::object>(raw);
    BatchItem bi;
    read_batch_item(item.ptr(), index, bi);
    Utf8 ns = utf8(bi.fields[0], "namespace", index);
    Utf8 name = utf8(bi.fields[1], "name", index);
    Utf8 node = utf8(bi.fields[2], "node", index);
    int ready = as_ready(bi.fields[3], "ready", index);
    check_batch_room(fbb, ns.size + name.size + node.size, offsets.size(), Arg{"", index});
    auto ons = ns.size ? fbb.CreateString(ns.data, ns.size) : flatbuffers::Offset<flatbuffers::String>();
    // An empty name is still written, so that Berth reports it as an invalid
    // name (with its index) rather than a missing field.
    auto oname = fbb.CreateString(name.data, name.size);
    auto onode = node.size ? fbb.CreateString(node.data, node.size) : flatbuffers::Offset<flatbuffers::String>();
    offsets.push_back(berth::fb::CreatePoolKey(fbb, ons, oname, onode, ready != 0, 0));
    ++index;
  }
  if (PyErr_Occurred()) throw py::error_already_set();
  auto vec = fbb.CreateVector(offsets);
  fbb.Finish(berth::fb::CreatePoolKeyBatch(fbb, vec), BERTH_FB_POOL_KEY_BATCH_ID);

  size_t inserted = 0;
  const uint8_t* data = fbb.GetBufferPointer();
  const size_t size = fbb.GetSize();
  call([&](berth_engine* e) {
    return berth_pool_add_batch(&inserted, e, p.data, p.size, data, size);
  });
  return inserted;
}

constexpr Method<&Engine::add, 5> kAdd{
    "add", {kPool, kNamespace, kName, kNode, kReady},
    "add($self, pool, namespace, name, node='', ready=True)\n--\n\n"
    "Adds a key to a pool, creating the pool if needed. True if it was inserted; "
    "False if it was present (node and ready updated in place, age kept)."};
constexpr Method<&Engine::update, 5> kUpdate{
    "update", {kPool, kNamespace, kName, kNode, kReady},
    "update($self, pool, namespace, name, node='', ready=True)\n--\n\n"
    "Updates node and ready of a key only if it is in the pool (age kept); never inserts. "
    "True if it was there."};
constexpr Method<&Engine::add_batch, 2> kAddBatch{
    "add_batch", {kPool, Param{"keys"}},
    "add_batch($self, pool, keys)\n--\n\n"
    "Adds many keys in one call, all or nothing; returns how many were new."};
constexpr Method<&Engine::remove, 3> kRemove{
    "remove", {kPool, kNamespace, kName},
    "remove($self, pool, namespace, name)\n--\n\n"
    "Removes a key; True if it was there. An absent key or pool is not an error."};
constexpr Method<&Engine::remove_pool, 1> kRemovePool{
    "remove_pool", {kPool},
    "remove_pool($self, pool)\n--\n\nDrops a pool and its put_back records; True if it existed."};
constexpr Method<&Engine::pop<false>, 1> kPopFifo{
    "pop_fifo", {kPool},
    "pop_fifo($self, pool)\n--\n\nHands out the oldest key (ready or not), or None if the pool "
    "is empty."};
constexpr Method<&Engine::pop<true>, 1> kPopSpread{
    "pop_spread", {kPool},
    "pop_spread($self, pool)\n--\n\nHands out a key by the NodeSpread rule, or None if the pool "
    "is empty."};
constexpr Method<&Engine::put_back, 2> kPutBack{
    "put_back", {kPool, Param{"key"}},
    "put_back($self, pool, key)\n--\n\n"
    "Returns a handed-out PoolKey at its original age; False if the put_back is stale."};
constexpr Method<&Engine::stats, 1> kStats{
    "stats", {kPool}, "stats($self, pool)\n--\n\nCounters of a pool (PoolStats)."};
constexpr Method<&Engine::snapshot, 1> kSnapshot{
    "snapshot", {kPool},
    "snapshot($self, pool)\n--\n\nEvery key of a pool, oldest first (list of PoolKey, token 0)."};
constexpr Method<&Engine::pools, 0> kPools{
    "pools", {},
    "pools($self)\n--\n\nThe names of the engine's pools, sorted (berth_engine_list_pools). A pool "
    "exists from its first add until remove_pool, also while empty."};
constexpr Method<&Engine::node_stats, 1> kNodeStats{
    "node_stats", {kPool},
    "node_stats($self, pool)\n--\n\nKey counts per node (dict of NodeStat), in node-name order."};

// Referenced by the method descriptors for the life of the process.
PyMethodDef g_engine_methods[] = {
    method_def<kAdd>(),        method_def<kUpdate>(),   method_def<kAddBatch>(),
    method_def<kRemove>(),     method_def<kRemovePool>(), method_def<kPopFifo>(),
    method_def<kPopSpread>(),  method_def<kPutBack>(),  method_def<kStats>(),
    method_def<kSnapshot>(),   method_def<kNodeStats>(), method_def<kPools>(),
};


}  // namespace

void bind_pool(py::module_& m) {
  py::class_<Engine> cls(m, "Engine", py::is_final(),
                         "A Berth engine: owns pools of keys. Thread-safe; use as a "
                         "context manager or call close().");
  cls.attr("__module__") = "berth";
  cls.def(py::init<>());
  def_handle_protocol(cls, "Frees the engine after calls in flight in other threads return. "
                           "Idempotent.");
  cls.def("__repr__", [](const Engine& e) {
    return e.closed() ? "<berth.Engine closed>" : "<berth.Engine open>";
  });
  install_methods(cls, g_engine_methods);
}

}  // namespace berth_py
