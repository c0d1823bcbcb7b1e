// Bucket: the token bucket (berth_bucket_*).

#include <memory>
#include <string>

#include "common.h"

namespace berth_py {
namespace {

class Bucket : public Handle<berth_bucket, &berth_bucket_free> {
 public:
  Bucket(py::handle rate, py::handle burst) : Handle("bucket") {
    const double r = as_double(rate.ptr(), Arg{"rate"});
    const int64_t b = as_i64(burst.ptr(), Arg{"burst"});
    berth_bucket* h = nullptr;
    Failure f;
    {
      NoGil nogil;
      berth_status st = berth_bucket_new(&h, r, b);
      if (is_failure(st)) f.capture(st);
    }
    if (is_failure(f.status)) raise_failure(f);
    adopt(h);
  }

  bool allow(py::handle n, py::handle now) {
    const int64_t k = as_i64(n.ptr(), Arg{"n"});
    const int64_t t = as_now(now.ptr());
    int allowed = 0;
    call([&](berth_bucket* b) { return berth_bucket_allow(&allowed, b, k, t); });
    return allowed != 0;
  }

  py::object reserve(Self self, py::handle n, py::handle now) {
    const int64_t k = as_i64(n.ptr(), Arg{"n"});
    const int64_t t = as_now(now.ptr());
    berth_reservation r{};
    call([&](berth_bucket* b) { return berth_bucket_reserve(&r, b, k, t); });
    return call_python(g.reservation, self.obj, r.time_to_act_ns, r.delay_ns, r.tokens, r.rate);
  }

  // Reservation.cancel(): the reservation's fields come back from Python.
  py::object cancel_reservation(py::handle time_to_act_ns, py::handle tokens, py::handle rate,
                                py::handle now) {
    berth_reservation r{};
    r.time_to_act_ns = as_i64(time_to_act_ns.ptr(), Arg{"time_to_act_ns"});
    r.tokens = as_i64(tokens.ptr(), Arg{"tokens"});
    r.rate = as_double(rate.ptr(), Arg{"rate"});
    const int64_t t = as_now(now.ptr());
    call([&](berth_bucket* b) { return berth_bucket_cancel(b, &r, t); });
    return py::none();
  }

  py::object set_rate(py::handle rate, py::handle now) {
    const double r = as_double(rate.ptr(), Arg{"rate"});
    const int64_t t = as_now(now.ptr());
    call([&](berth_bucket* b) { return berth_bucket_set_rate(b, r, t); });
    return py::none();
  }

  py::object set_burst(py::handle burst, py::handle now) {
    const int64_t v = as_i64(burst.ptr(), Arg{"burst"});
    const int64_t t = as_now(now.ptr());
    call([&](berth_bucket* b) { return berth_bucket_set_burst(b, v, t); });
    return py::none();
  }

  berth_bucket_stats raw_stats(int64_t now) {
    berth_bucket_stats s{};
    call([&](berth_bucket* b) { return berth_bucket_get_stats(&s, b, now); });
    return s;
  }

  py::object stats(py::handle now) {
    const berth_bucket_stats s = raw_stats(as_now(now.ptr()));
    return make_tuple_type(g.bucket_stats, s.rate, s.burst, s.tokens);
  }
};

constexpr Method<&Bucket::allow, 2> kAllow{
    "allow", {kN1, kNowNs},
    "allow($self, n=1, now_ns=None)\n--\n\nTakes n tokens now if the bucket holds them; "
    "False (nothing taken) if not."};
constexpr Method<&Bucket::reserve, 2> kReserve{
    "reserve", {kN1, kNowNs},
    "reserve($self, n=1, now_ns=None)\n--\n\nTakes n tokens now, into debt if need be; the "
    "Reservation says how long to wait before acting."};
constexpr Method<&Bucket::cancel_reservation, 4> kCancelReservation{
    "_cancel_reservation", {Param{"time_to_act_ns"}, Param{"tokens"}, Param{"rate"}, kNowNs},
    "_cancel_reservation($self, time_to_act_ns, tokens, rate, now_ns=None)\n--\n\n"
    "berth_bucket_cancel of a reservation's fields (Reservation.cancel calls it once)."};
constexpr Method<&Bucket::set_rate, 2> kSetRate{
    "set_rate", {Param{"rate"}, kNowNs},
    "set_rate($self, rate, now_ns=None)\n--\n\nChanges the rate (> 0 or math.inf) from now "
    "on, keeping the tokens accrued."};
constexpr Method<&Bucket::set_burst, 2> kSetBurst{
    "set_burst", {Param{"burst"}, kNowNs},
    "set_burst($self, burst, now_ns=None)\n--\n\nChanges the burst (>= 1) from now on; a "
    "lower burst caps the tokens at once."};
constexpr Method<&Bucket::stats, 1> kBucketStats{
    "stats", {kNowNs},
    "stats($self, now_ns=None)\n--\n\nRate, burst and tokens at now_ns (BucketStats)."};

PyMethodDef g_bucket_methods[] = {
    method_def<kAllow>(),   method_def<kReserve>(),  method_def<kCancelReservation>(),
    method_def<kSetRate>(), method_def<kSetBurst>(), method_def<kBucketStats>(),
};


}  // namespace

void bind_bucket(py::module_& m) {
  py::class_<Bucket> bucket(m, "Bucket", py::is_final(),
                            "A token bucket with the semantics of golang.org/x/time/rate. "
                            "Thread-safe; use as a context manager or call close().");
  bucket.attr("__module__") = "berth";
  bucket.def(py::init([](py::object rate, py::object burst) {
               return std::make_unique<Bucket>(rate, burst);
             }),
             py::arg("rate"), py::arg("burst"));
  def_handle_protocol(bucket, "Frees the bucket after calls in flight in other threads return. "
                              "Idempotent.");
  bucket.def_property(
      "rate", [](Bucket& b) { return b.raw_stats(BERTH_NOW).rate; },
      [](Bucket& b, py::object r) { b.set_rate(r, py::none()); });
  bucket.def_property(
      "burst", [](Bucket& b) { return b.raw_stats(BERTH_NOW).burst; },
      [](Bucket& b, py::object v) { b.set_burst(v, py::none()); });
  bucket.def("__repr__", [](Bucket& b) {
    if (b.closed()) return std::string("<berth.Bucket closed>");
    const berth_bucket_stats s = b.raw_stats(BERTH_NOW);
    return "<berth.Bucket rate=" + py::repr(py::float_(s.rate)).cast<std::string>() +
           " burst=" + std::to_string(s.burst) + ">";
  });
  install_methods(bucket, g_bucket_methods);
}

}  // namespace berth_py
