// Hand-worked cases and argument errors for broadcasting arithmetic, reductions, channel
// concat/slice and embedding; plus agreement with naive index loops on shapes large enough to
// take the chunked and multi-threaded paths.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "engine/ops.h"
#include "tests/op_check.h"

using namespace sal;
using sal::test::all_close;

namespace {

// Index of `out`'s element `flat` in a right-aligned broadcast operand of shape s.
int64_t source_index(const Shape& s, const Shape& out, int64_t flat) {
  int64_t idx = 0, stride = 1;
  for (int i = out.nd - 1; i >= 0; --i) {
    const int64_t coord = flat % out.d[i];
    flat /= out.d[i];
    const int j = i - (out.nd - s.nd);
    if (j < 0) continue;
    if (s.d[j] != 1) idx += coord * stride;
    stride *= s.d[j];
  }
  return idx;
}

std::vector<double> random_values(const Shape& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  return sal::test::uniform(s, rng);
}

}  // namespace

TEST_CASE("broadcast_shape: NumPy rules, aligned from the right") {
  CHECK(broadcast_shape({2, 1, 3}, {1, 4, 1}) == Shape{2, 4, 3});
  CHECK(broadcast_shape({5}, {3, 1}) == Shape{3, 5});
  CHECK(broadcast_shape({2, 3, 4, 4}, {2, 3, 1, 1}) == Shape{2, 3, 4, 4});
  CHECK(broadcast_shape(Shape{}, {2, 3}) == Shape{2, 3});
  CHECK(broadcast_shape({0, 1}, {1, 3}) == Shape{0, 3});
  CHECK_THROWS_WITH_AS(broadcast_shape({2, 3}, {3, 3}),
                       doctest::Contains("broadcast_shape: shapes [2,3] and [3,3] do not broadcast: extents 2 and 3"),
                       Error);
}

TEST_CASE("add / sub / mul: [2,1,3] with [1,4,1] broadcast both ways") {
  Ctx ctx;
  // a[i,0,k] = 10 i + k, b[0,j,0] = 100 (j+1): y[i,j,k] = a[i,k] + b[j].
  Tensor a = Tensor::from_values({0, 1, 2, 10, 11, 12}, Shape{2, 1, 3});
  Tensor b = Tensor::from_values({100, 200, 300, 400}, Shape{1, 4, 1});
  Tensor y = add(ctx, a, b);
  CHECK(y.shape() == Shape{2, 4, 3});
  CHECK(all_close(y, {100, 101, 102, 200, 201, 202, 300, 301, 302, 400, 401, 402,  //
                      110, 111, 112, 210, 211, 212, 310, 311, 312, 410, 411, 412}));
  CHECK(all_close(sub(ctx, a, b), {-100, -99, -98, -200, -199, -198, -300, -299, -298, -400, -399, -398,  //
                                   -90, -89, -88, -190, -189, -188, -290, -289, -288, -390, -389, -388}));
  CHECK(all_close(sub(ctx, b, a), {100, 99, 98, 200, 199, 198, 300, 299, 298, 400, 399, 398,  //
                                   90, 89, 88, 190, 189, 188, 290, 289, 288, 390, 389, 388}));
  // mul: a' = 1..6, b' = 1, 10, 100, 1000.
  Tensor a2 = Tensor::from_values({1, 2, 3, 4, 5, 6}, Shape{2, 1, 3});
  Tensor b2 = Tensor::from_values({1, 10, 100, 1000}, Shape{1, 4, 1});
  CHECK(all_close(mul(ctx, a2, b2), {1, 2, 3, 10, 20, 30, 100, 200, 300, 1000, 2000, 3000,  //
                                     4, 5, 6, 40, 50, 60, 400, 500, 600, 4000, 5000, 6000}));

  SUBCASE("sum_to takes the broadcast back") {
    // Over j: 4 a[i,k] + (100+200+300+400) = 4 a[i,k] + 1000.
    CHECK(all_close(sum_to(ctx, y, a.shape()), {1000, 1004, 1008, 1040, 1044, 1048}));
    // Over i,k: (0+1+2+10+11+12) + 6 b[j] = 36 + 6 b[j].
    CHECK(all_close(sum_to(ctx, y, b.shape()), {636, 1236, 1836, 2436}));
    // To [3] (lower rank): over i,j: 4 (a[0,k] + a[1,k]) + 2 * 1000.
    CHECK(all_close(sum_to(ctx, y, Shape{3}), {2040, 2048, 2056}));
    // Everything: 4 * 36 + 6 * 1000 = 6144, and so sum = 6144, mean = 6144 / 24 = 256.
    Tensor all = sum_to(ctx, y, Shape{});
    CHECK(all.ndim() == 0);
    CHECK(all.item() == doctest::Approx(6144));
    CHECK(sum(ctx, y).shape() == Shape{1});
    CHECK(sum(ctx, y).item() == doctest::Approx(6144));
    CHECK(mean(ctx, y).item() == doctest::Approx(256));
    CHECK(all_close(sum_to(ctx, y, y.shape()), y.values()));
  }
}

TEST_CASE("mul: the masker's [N,C,H,W] x [N,C,1,1] and [N,1,H,W] patterns") {
  Ctx ctx;
  Tensor x = Tensor::from_values({1, 2, 3, 4, 5, 6, 7, 8}, Shape{1, 2, 2, 2});
  // Per channel: channel 0 times 10, channel 1 times -1.
  CHECK(all_close(mul(ctx, x, Tensor::from_values({10, -1}, Shape{1, 2, 1, 1})), {10, 20, 30, 40, -5, -6, -7, -8}));
  // Per pixel, the same for both channels: {1, 0, 2, -1}.
  Tensor m = Tensor::from_values({1, 0, 2, -1}, Shape{1, 1, 2, 2});
  CHECK(all_close(mul(ctx, x, m), {1, 0, 6, -4, 5, 0, 14, -8}));
  CHECK(all_close(mul(ctx, m, x), {1, 0, 6, -4, 5, 0, 14, -8}));
  // Scalars either side, and a rank-0 tensor.
  CHECK(all_close(sub(ctx, Tensor::from_values({1}, Shape{1}), x), {0, -1, -2, -3, -4, -5, -6, -7}));
  CHECK(all_close(add(ctx, x, Tensor::from_values({0.5}, Shape{})), {1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5}));
}

TEST_CASE("add / sub / mul / sum_to agree with naive index loops (large, odd, threaded)") {
  Ctx ctx;
  struct Pair {
    Shape a, b;
  };
  const Pair pairs[] = {
      {{2, 3, 70, 70}, {2, 3, 1, 1}},   // rows of 4900 > one chunk, threads on
      {{2, 3, 70, 70}, {2, 1, 70, 70}},
      {{1, 3, 70, 70}, {1, 3, 70, 70}}, // equal shapes, one flat loop in chunks
      {{5, 1, 7}, {1, 9, 1}},
      {{3, 1, 4, 1, 5}, {2, 1, 1, 5}},
      {{9000, 1}, {1, 3}},              // many short rows
      {{7}, {1}},
  };
  for (DType dt : {DType::F32, DType::F64}) {
    for (const Pair& p : pairs) {
      CAPTURE(p.a);
      CAPTURE(p.b);
      Tensor a = Tensor::from_values(random_values(p.a, 1), p.a, dt);
      Tensor b = Tensor::from_values(random_values(p.b, 2), p.b, dt);
      const std::vector<double> av = a.values(), bv = b.values();  // as stored (rounded for f32)
      const Shape out = broadcast_shape(p.a, p.b);
      std::vector<double> want_add(static_cast<size_t>(out.numel())), want_sub = want_add, want_mul = want_add;
      for (int64_t i = 0; i < out.numel(); ++i) {
        const double u = av[static_cast<size_t>(source_index(p.a, out, i))];
        const double v = bv[static_cast<size_t>(source_index(p.b, out, i))];
        want_add[static_cast<size_t>(i)] = u + v;
        want_sub[static_cast<size_t>(i)] = u - v;
        want_mul[static_cast<size_t>(i)] = u * v;
      }
      const double tol = dt == DType::F32 ? 1e-5 : 1e-12;
      CHECK(all_close(add(ctx, a, b), want_add, tol));
      CHECK(all_close(sub(ctx, a, b), want_sub, tol));
      CHECK(all_close(mul(ctx, a, b), want_mul, tol));
      // sum_to of the product back to each operand's shape.
      Tensor y = mul(ctx, a, b);
      for (const Shape& to : {p.a, p.b}) {
        std::vector<double> want(static_cast<size_t>(to.numel()), 0.0);
        for (int64_t i = 0; i < out.numel(); ++i) want[static_cast<size_t>(source_index(to, out, i))] += want_mul[static_cast<size_t>(i)];
        CHECK(all_close(sum_to(ctx, y, to), want, dt == DType::F32 ? 1e-3 : 1e-10));
      }
    }
  }
}

TEST_CASE("sum_to: every reduction pattern against a naive loop") {
  Ctx ctx;
  const Shape x_shape{3, 4, 50, 30};  // 18000 elements: threads on
  const std::vector<double> xv = random_values(x_shape, 3);
  Tensor x = Tensor::from_values(xv, x_shape, DType::F64);
  const Shape targets[] = {{1, 4, 1, 1}, {3, 4, 1, 1}, {3, 1, 50, 30}, {1, 1, 50, 1}, {30},
                           {4, 1, 1},    {3, 1, 1, 30}, {1},           Shape{},        {3, 4, 50, 30}};
  for (const Shape& to : targets) {
    CAPTURE(to);
    std::vector<double> want(static_cast<size_t>(to.numel()), 0.0);
    for (int64_t i = 0; i < x.numel(); ++i) want[static_cast<size_t>(source_index(to, x_shape, i))] += xv[static_cast<size_t>(i)];
    Tensor y = sum_to(ctx, x, to);
    CHECK(y.shape() == to);
    CHECK(all_close(y, want, 1e-9));
  }
}

TEST_CASE("empty tensors: broadcasting to no elements, sums of nothing are 0") {
  Ctx ctx;
  Tensor e = Tensor::zeros(Shape{0, 3});
  CHECK(add(ctx, e, Tensor::from_values({1, 2, 3}, Shape{1, 3})).shape() == Shape{0, 3});
  CHECK(all_close(sum_to(ctx, e, Shape{1, 3}), {0, 0, 0}));
  CHECK(sum(ctx, e).item() == 0);
  const std::vector<Tensor> no_channels = {Tensor::zeros(Shape{2, 0, 1, 1}), Tensor::zeros(Shape{2, 0, 1, 1})};
  CHECK(concat_channels(ctx, no_channels).shape() == Shape{2, 0, 1, 1});
  CHECK(slice_channels(ctx, Tensor::zeros(Shape{2, 3, 1, 1}), 3, 0).shape() == Shape{2, 0, 1, 1});
}

TEST_CASE("scale / axpy / sum / mean: hand-worked values") {
  Ctx ctx;
  CHECK(all_close(scale(ctx, Tensor::from_values({1, -2, 0.5}, Shape{3}), 3), {3, -6, 1.5}));
  Tensor y = Tensor::from_values({1, 1, 1}, Shape{3});
  axpy(ctx, 2, Tensor::from_values({1, 2, 3}, Shape{3}), y);  // 1 + 2 * {1,2,3}
  CHECK(all_close(y, {3, 5, 7}));
  CHECK(mean(ctx, Tensor::from_values({1, 2, 3, 4}, Shape{2, 2})).item() == 2.5);
  // f32 input, double accumulation: 1e8 + 1000 ones. A float accumulator would stay at 1e8
  // (the float spacing there is 8); 100001000 is a float, so the exact sum survives.
  std::vector<double> v(1001, 1.0);
  v[0] = 1e8;
  Tensor big = Tensor::from_values(v, Shape{1001}, DType::F32);
  CHECK(sum(ctx, big).item() == 100001000.0);
  // Threaded reduction: 100000 values of 0.25.
  Tensor q = Tensor::from_values(std::vector<double>(100000, 0.25), Shape{100, 1000}, DType::F32);
  CHECK(sum(ctx, q).item() == 25000.0);
  CHECK(mean(ctx, q).item() == 0.25);
}

TEST_CASE("concat_channels / slice_channels: hand-worked values") {
  Ctx ctx;
  // N = 2: y[n] = (a[n], b[n]) channel after channel.
  Tensor a = Tensor::from_values({1, 2, 3, 4}, Shape{2, 1, 1, 2});
  Tensor b = Tensor::from_values({5, 6, 7, 8}, Shape{2, 1, 1, 2});
  const Tensor xs[] = {a, b};
  Tensor y = concat_channels(ctx, xs);
  CHECK(y.shape() == Shape{2, 2, 1, 2});
  CHECK(all_close(y, {1, 2, 5, 6, 3, 4, 7, 8}));
  CHECK(all_close(slice_channels(ctx, y, 1, 1), {5, 6, 7, 8}));
  CHECK(all_close(slice_channels(ctx, y, 0, 2), y.values()));
  // Different channel counts: [1,1,2,1] and [1,2,2,1].
  const Tensor ys[] = {Tensor::from_values({1, 2}, Shape{1, 1, 2, 1}), Tensor::from_values({3, 4, 5, 6}, Shape{1, 2, 2, 1})};
  Tensor z = concat_channels(ctx, ys);
  CHECK(z.shape() == Shape{1, 3, 2, 1});
  CHECK(all_close(z, {1, 2, 3, 4, 5, 6}));
  CHECK(all_close(slice_channels(ctx, z, 1, 2), {3, 4, 5, 6}));
}

TEST_CASE("embedding / embedding_backward: rows, accumulation, duplicate ids") {
  Ctx ctx;
  Tensor table = Tensor::from_values({0, 1, 10, 11, 20, 21}, Shape{3, 2});
  Tensor ids = Tensor::from_labels({2, 0, 2});
  CHECK(all_close(embedding(ctx, table, ids), {20, 21, 0, 1, 20, 21}));
  // dtable starts at ones: row 2 += (1,2) + (5,6), row 0 += (3,4), row 1 untouched.
  Tensor dtable = Tensor::from_values({1, 1, 1, 1, 1, 1}, Shape{3, 2});
  embedding_backward(ctx, Tensor::from_values({1, 2, 3, 4, 5, 6}, Shape{3, 2}), ids, dtable);
  CHECK(all_close(dtable, {4, 5, 1, 1, 7, 9}));
}

TEST_CASE("arithmetic: argument errors") {
  Ctx ctx;
  Tensor x = Tensor::from_values({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  CHECK_THROWS_WITH_AS(add(ctx, x, Tensor::from_values({1, 2, 3, 4}, Shape{4})),
                       doctest::Contains("add: shapes [2,3] and [4] do not broadcast"), Error);
  CHECK_THROWS_WITH_AS(mul(ctx, x, Tensor::from_values({1, 2, 3, 4}, Shape{2, 1, 2})),
                       doctest::Contains("mul: shapes [2,3] and [2,1,2] do not broadcast: extents 3 and 2"), Error);
  CHECK_THROWS_WITH_AS(sub(ctx, x, x.to(DType::F64)), doctest::Contains("sub: mixed dtypes"), Error);
  CHECK_THROWS_WITH_AS(add(ctx, x, Tensor()), doctest::Contains("add: an operand is undefined"), Error);
  CHECK_THROWS_WITH_AS(mul(ctx, Tensor::from_labels({1, 2, 3}), Tensor::from_labels({1, 2, 3})),
                       doctest::Contains("mul: tensor i32[3]@cpu has an unsupported dtype"), Error);
  CHECK_THROWS_WITH_AS(sum_to(ctx, x, Shape{3, 3}),
                       doctest::Contains("sum_to: shape [3,3] does not broadcast to x's shape [2,3]"), Error);
  CHECK_THROWS_WITH_AS(sum_to(ctx, x, Shape{1, 2, 3}),
                       doctest::Contains("sum_to: shape [1,2,3] does not broadcast to x's shape [2,3]"), Error);
  CHECK_THROWS_WITH_AS(sum_to(ctx, x, Shape{2}), doctest::Contains("sum_to: shape [2] does not broadcast"), Error);
  Tensor y3 = Tensor::zeros(Shape{3});
  CHECK_THROWS_WITH_AS(axpy(ctx, 1, Tensor::zeros(Shape{2}), y3), doctest::Contains("axpy: x has shape [2], expected [3]"),
                       Error);
  CHECK_THROWS_WITH_AS(mean(ctx, Tensor::zeros(Shape{0, 3})), doctest::Contains("mean: x f32[0,3]@cpu has no elements"),
                       Error);
  CHECK_THROWS_WITH_AS(sum(ctx, Tensor::from_labels({1})), doctest::Contains("sum: tensor i32[1]@cpu has an unsupported"),
                       Error);
  CHECK_THROWS_WITH_AS(scale(ctx, Tensor(), 2), doctest::Contains("scale: x is undefined"), Error);
  Ctx gpu(Device::CUDA);
  CHECK_THROWS_WITH_AS(add(gpu, x, x), doctest::Contains("add: tensor f32[2,3]@cpu is not on the context's device"), Error);
  CHECK_THROWS_WITH_AS(sum_to(gpu, x, Shape{1, 3}), doctest::Contains("sum_to: tensor f32[2,3]@cpu is not on the context"),
                       Error);
}

TEST_CASE("concat / slice / embedding: argument errors") {
  Ctx ctx;
  Tensor a = Tensor::zeros(Shape{1, 1, 2, 2});
  CHECK_THROWS_WITH_AS(concat_channels(ctx, std::span<const Tensor>{}), doctest::Contains("concat_channels: no inputs"),
                       Error);
  const Tensor bad_hw[] = {a, Tensor::zeros(Shape{1, 1, 3, 2})};
  CHECK_THROWS_WITH_AS(concat_channels(ctx, bad_hw),
                       doctest::Contains("concat_channels: xs[1] is [1,1,3,2], expected N,H,W = 1,2,2 as xs[0] [1,1,2,2]"),
                       Error);
  const Tensor bad_n[] = {a, Tensor::zeros(Shape{2, 1, 2, 2})};
  CHECK_THROWS_WITH_AS(concat_channels(ctx, bad_n), doctest::Contains("concat_channels: xs[1] is [2,1,2,2]"), Error);
  const Tensor bad_rank[] = {a, Tensor::zeros(Shape{1, 2, 2})};
  CHECK_THROWS_WITH_AS(concat_channels(ctx, bad_rank), doctest::Contains("concat_channels: xs[1] must have 4 dimensions"),
                       Error);
  const Tensor bad_dtype[] = {a, Tensor::zeros(Shape{1, 1, 2, 2}, DType::F64)};
  CHECK_THROWS_WITH_AS(concat_channels(ctx, bad_dtype), doctest::Contains("concat_channels: mixed dtypes"), Error);
  Tensor x = Tensor::zeros(Shape{1, 3, 2, 2});
  CHECK_THROWS_WITH_AS(slice_channels(ctx, x, 2, 3),
                       doctest::Contains("slice_channels: channels [2, 5) are not inside the 3 channels"), Error);
  CHECK_THROWS_WITH_AS(slice_channels(ctx, x, -1, 1), doctest::Contains("slice_channels: channels [-1, 0)"), Error);
  CHECK_THROWS_WITH_AS(slice_channels(ctx, Tensor::zeros(Shape{3, 2}), 0, 1),
                       doctest::Contains("slice_channels: x must have 4 dimensions"), Error);

  Tensor table = Tensor::zeros(Shape{3, 2});
  CHECK_THROWS_WITH_AS(embedding(ctx, table, Tensor::from_labels({0, 3})),
                       doctest::Contains("embedding: ids[1] = 3 is out of range for a table of 3 rows"), Error);
  CHECK_THROWS_WITH_AS(embedding(ctx, table, Tensor::from_labels({-1})),
                       doctest::Contains("embedding: ids[0] = -1 is out of range"), Error);
  CHECK_THROWS_WITH_AS(embedding(ctx, table, Tensor::zeros(Shape{2})), doctest::Contains("embedding: ids must be i32"),
                       Error);
  CHECK_THROWS_WITH_AS(embedding(ctx, Tensor::zeros(Shape{3}), Tensor::from_labels({0})),
                       doctest::Contains("embedding: table must have 2 dimensions"), Error);
  Tensor dtable = Tensor::zeros(Shape{3, 2});
  CHECK_THROWS_WITH_AS(embedding_backward(ctx, Tensor::zeros(Shape{2, 3}), Tensor::from_labels({0, 1}), dtable),
                       doctest::Contains("embedding_backward: dy has shape [2,3], expected [2,2]"), Error);
  CHECK_THROWS_WITH_AS(embedding_backward(ctx, Tensor::zeros(Shape{1, 2}), Tensor::from_labels({7}), dtable),
                       doctest::Contains("embedding_backward: ids[0] = 7 is out of range"), Error);
  CHECK(all_close(dtable, {0, 0, 0, 0, 0, 0}));  // nothing written before the error
  Ctx gpu(Device::CUDA);
  CHECK_THROWS_WITH_AS(embedding(gpu, table, Tensor::from_labels({0})),
                       doctest::Contains("embedding: tensor f32[3,2]@cpu is not on the context's device"), Error);
}

#ifdef SAL_WITH_CUDA
#include "cuda/device.h"

TEST_CASE("cuda: ids out of range give NaN (kernels cannot throw) - sums repeat bitwise on a stream") {
  if (!cuda_available()) {
    MESSAGE("skipped: no CUDA device");
    return;
  }
  CudaDevice dev;
  Arena arena(Device::CUDA);
  Ctx g = dev.ctx(&arena);
  Ctx cpu;
  // Id 3 of a 3-row table: its output row is NaN; in the backward, row 0 of dtable is NaN and
  // the other rows get their (duplicate) contributions added in order.
  Tensor table = Tensor::from_values({0, 1, 10, 11, 20, 21}, Shape{3, 2});
  Tensor ids = Tensor::from_labels({2, 3, 2});
  Tensor y = embedding(g, table.to(Device::CUDA), ids.to(Device::CUDA));
  Tensor dtable = Tensor::from_values({1, 1, 1, 1, 1, 1}, Shape{3, 2}).to(Device::CUDA);
  embedding_backward(g, Tensor::from_values({1, 2, 3, 4, 5, 6}, Shape{3, 2}).to(Device::CUDA), ids.to(Device::CUDA),
                     dtable);
  dev.synchronize();
  const std::vector<double> yv = y.values(), dv = dtable.values();
  CHECK(yv[0] == 20);
  CHECK(yv[1] == 21);
  CHECK(std::isnan(yv[2]));
  CHECK(std::isnan(yv[3]));
  CHECK(yv[4] == 20);
  CHECK(std::isnan(dv[0]));
  CHECK(std::isnan(dv[1]));
  CHECK(dv[2] == 1);
  CHECK(dv[3] == 1);
  CHECK(dv[4] == 7);  // 1 + 1 + 5
  CHECK(dv[5] == 9);  // 1 + 2 + 6

  // Large reductions (slice partials, finalize kernels): equal to the CPU and bitwise repeatable.
  std::mt19937_64 rng(23);
  const Shape xs{16, 64, 56, 56};
  Tensor x = Tensor::from_values(sal::test::uniform(xs, rng), xs);
  Tensor dx = x.to(Device::CUDA);
  for (const Shape& to : {Shape{1}, Shape{1, 64, 1, 1}, Shape{16, 1, 56, 56}, Shape{1, 64, 56, 56}, Shape{16, 64, 1, 1}}) {
    INFO(to.str());
    Tensor a = sum_to(g, dx, to), b = sum_to(g, dx, to);
    dev.synchronize();
    CHECK(a.values() == b.values());
    CHECK(sal::test::max_rel_diff(a, sum_to(cpu, x, to)) < 1e-5);
  }
  Tensor s1 = sum(g, dx), s2 = sum(g, dx), m1 = mean(g, dx);
  dev.synchronize();
  CHECK(s1.item() == s2.item());
  CHECK(sal::test::max_rel_diff(s1, sum(cpu, x)) < 1e-5);
  CHECK(sal::test::max_rel_diff(m1, mean(cpu, x)) < 1e-6);
}
#endif
