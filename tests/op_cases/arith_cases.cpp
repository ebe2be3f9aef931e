// Harness rows: broadcasting arithmetic (gradients through sum_to), scale, axpy, sum_to, sum,
// mean, channel concat/slice, embedding, and the masker's feature filter composed from them.
#include "tests/op_check.h"

namespace sal::test {

namespace {

// Broadcast of dy back to the shape of x (the backward of sum_to / sum): zeros(x) + dy.
Tensor broadcast_like(Ctx& c, const Tensor& dy, const Shape& shape) {
  return add(c, c.alloc_zeros(shape, dy.dtype()), dy);
}

OpCase add_case(std::string name, Shape a, Shape b) {
  return OpCase{.name = std::move(name),
                .shapes = {a, b},
                .check_grad = {true, true},
                .forward = [](Ctx& c, const Inputs& in) { return add(c, in[0], in[1]); },
                .backward = [](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
                  return std::vector<Tensor>{sum_to(c, dy, in[0].shape()), sum_to(c, dy, in[1].shape())};
                }};
}

OpCase sub_case(std::string name, Shape a, Shape b) {
  return OpCase{.name = std::move(name),
                .shapes = {a, b},
                .check_grad = {true, true},
                .forward = [](Ctx& c, const Inputs& in) { return sub(c, in[0], in[1]); },
                .backward = [](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
                  return std::vector<Tensor>{sum_to(c, dy, in[0].shape()), scale(c, sum_to(c, dy, in[1].shape()), -1)};
                }};
}

OpCase mul_case(std::string name, Shape a, Shape b) {
  return OpCase{.name = std::move(name),
                .shapes = {a, b},
                .check_grad = {true, true},
                .forward = [](Ctx& c, const Inputs& in) { return mul(c, in[0], in[1]); },
                .backward = [](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
                  return std::vector<Tensor>{sum_to(c, mul(c, dy, in[1]), in[0].shape()),
                                             sum_to(c, mul(c, dy, in[0]), in[1].shape())};
                }};
}

OpCase sum_to_case(std::string name, Shape x, Shape to) {
  return OpCase{.name = std::move(name),
                .shapes = {x},
                .check_grad = {true},
                .forward = [to](Ctx& c, const Inputs& in) { return sum_to(c, in[0], to); },
                .backward = [](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
                  return std::vector<Tensor>{broadcast_like(c, dy, in[0].shape())};
                }};
}

// `c` with a per-row CUDA tolerance and a cap on finite differences (large rows).
OpCase big(OpCase c, double cuda_tol = 1e-4, int max_fd = 8) {
  c.cuda_tol = cuda_tol;
  c.max_fd_elements = max_fd;
  return c;
}

// A zero tensor of `full`'s shape with rows [1, n) of its first dimension set to `rows` (the
// adjoint of taking the view slice0(1, n - 1), which starts at an unaligned address when a row's
// size is not a multiple of 4 floats).
Tensor place_rows_after_first(Ctx& c, const Shape& full, const Tensor& rows) {
  Tensor z = c.alloc_zeros(full, rows.dtype());
  Tensor view = z.slice0(1, full[0] - 1);
  view.copy_from(rows);
  return z;
}

OpCase embedding_case(std::string name, Shape table, std::vector<double> ids) {
  const int64_t n = static_cast<int64_t>(ids.size());
  return OpCase{.name = std::move(name),
                .shapes = {table, Shape{n}},
                .dtypes = {DType::F64, DType::I32},
                .check_grad = {true, false},
                .init = [ids](int i, const Shape&, std::mt19937_64&) { return i == 1 ? ids : std::vector<double>{}; },
                .forward = [](Ctx& c, const Inputs& in) { return embedding(c, in[0], in[1]); },
                .backward = [](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
                  Tensor dt = c.alloc_zeros(in[0].shape(), dy.dtype());
                  embedding_backward(c, dy, in[1], dt);
                  return std::vector<Tensor>{dt, Tensor()};
                }};
}

// The masker's feature filter, Y = X * sigmoid(sum_c X * C_s), with C_s = embedding(table, ids)
// seen as [N,C,1,1]: written with the ops the layer uses, differentiated by hand through them.
OpCase feature_filter_case(std::string name, Shape x, int64_t classes, std::vector<double> ids) {
  const int64_t n = x[0], ch = x[1];
  return OpCase{
      .name = std::move(name),
      .shapes = {x, Shape{classes, ch}, Shape{n}},
      .dtypes = {DType::F64, DType::F64, DType::I32},
      .check_grad = {true, true, false},
      .init = [ids](int i, const Shape&, std::mt19937_64&) { return i == 2 ? ids : std::vector<double>{}; },
      .forward =
          [](Ctx& c, const Inputs& in) {
            const Tensor& X = in[0];
            const Shape s{X.dim(0), 1, X.dim(2), X.dim(3)};
            Tensor cs = embedding(c, in[1], in[2]).reshape(Shape{X.dim(0), X.dim(1), 1, 1});
            Tensor gate = sigmoid(c, sum_to(c, mul(c, X, cs), s));
            return mul(c, X, gate);
          },
      .backward =
          [](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
            const Tensor& X = in[0];
            const Shape s{X.dim(0), 1, X.dim(2), X.dim(3)};
            const Shape cs_shape{X.dim(0), X.dim(1), 1, 1};
            Tensor cs = embedding(c, in[1], in[2]).reshape(cs_shape);
            Tensor gate = sigmoid(c, sum_to(c, mul(c, X, cs), s));
            // y = X * gate: dX gets dy * gate directly, and the gate's gradient sums over channels.
            Tensor dgate = sum_to(c, mul(c, dy, X), s);
            Tensor dz = sigmoid_backward(c, dgate, gate);  // [N,1,H,W]
            // z = sum_c X * cs: dX += dz * cs ([N,1,H,W] x [N,C,1,1] broadcast both ways).
            Tensor dX = add(c, mul(c, dy, gate), mul(c, dz, cs));
            Tensor dcs = sum_to(c, mul(c, dz, X), cs_shape);
            Tensor dtable = c.alloc_zeros(in[1].shape(), dy.dtype());
            embedding_backward(c, dcs.reshape(Shape{X.dim(0), X.dim(1)}), in[2], dtable);
            return std::vector<Tensor>{dX, dtable, Tensor()};
          }};
}

}  // namespace

SAL_OP_CASES {
  std::vector<OpCase> cases = {
      add_case("add/same_shape", {2, 3, 5}, {2, 3, 5}),
      add_case("add/broadcast_both_ways", {2, 1, 3}, {1, 4, 1}),
      add_case("add/lower_rank", {3, 4}, {4}),
      sub_case("sub/broadcast", {3, 1, 5}, {2, 1}),
      sub_case("sub/scalar_left", {1}, {2, 3}),
      mul_case("mul/nchw_by_nc11", {2, 3, 2, 5}, {2, 3, 1, 1}),
      mul_case("mul/nchw_by_n1hw_batch1", {1, 3, 3, 5}, {1, 1, 3, 5}),
      mul_case("mul/outer", {3, 1}, {1, 4}),
      mul_case("mul/rank6", {2, 1, 2, 1, 3, 1}, {1, 3, 1, 2, 1, 2}),
      mul_case("mul/rank0", {2, 3}, Shape{}),
      OpCase{.name = "scale",
             .shapes = {{3, 5, 1}},
             .check_grad = {true},
             .forward = [](Ctx& c, const Inputs& in) { return scale(c, in[0], -2.5); },
             .backward = [](Ctx& c, const Inputs&, const Tensor&, const Tensor& dy) {
               return std::vector<Tensor>{scale(c, dy, -2.5)};
             }},
      OpCase{.name = "axpy",
             .shapes = {{2, 7}, {2, 7}},
             .check_grad = {true, true},
             .forward =
                 [](Ctx& c, const Inputs& in) {
                   Tensor y = c.alloc(in[1].shape(), in[1].dtype());
                   y.copy_from(in[1]);
                   axpy(c, 0.7, in[0], y);
                   return y;
                 },
             .backward = [](Ctx& c, const Inputs&, const Tensor&, const Tensor& dy) {
               return std::vector<Tensor>{scale(c, dy, 0.7), scale(c, dy, 1)};
             }},
      sum_to_case("sum_to/bias_like", {2, 3, 4, 2}, {1, 3, 1, 1}),
      sum_to_case("sum_to/per_channel", {2, 3, 4, 2}, {2, 3, 1, 1}),
      sum_to_case("sum_to/over_channels", {2, 3, 4, 2}, {2, 1, 4, 2}),
      sum_to_case("sum_to/lower_rank", {2, 3, 4, 2}, {4, 1}),
      sum_to_case("sum_to/middle", {3, 4, 2}, {3, 1, 2}),
      sum_to_case("sum_to/all", {5, 3, 3}, {1, 1, 1}),
      sum_to_case("sum_to/rank0", {7}, Shape{}),
      sum_to_case("sum_to/identity", {3, 5}, {3, 5}),
      OpCase{.name = "sum",
             .shapes = {{3, 5, 2}},
             .check_grad = {true},
             .forward = [](Ctx& c, const Inputs& in) { return sum(c, in[0]); },
             .backward = [](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
               return std::vector<Tensor>{broadcast_like(c, dy, in[0].shape())};
             }},
      OpCase{.name = "mean",
             .shapes = {{4, 3}},
             .check_grad = {true},
             .forward = [](Ctx& c, const Inputs& in) { return mean(c, in[0]); },
             .backward = [](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
               return std::vector<Tensor>{scale(c, broadcast_like(c, dy, in[0].shape()), 1.0 / 12)};
             }},
      OpCase{.name = "concat_channels/three",
             .shapes = {{2, 1, 3, 2}, {2, 3, 3, 2}, {2, 2, 3, 2}},
             .check_grad = {true, true, true},
             .forward = [](Ctx& c, const Inputs& in) { return concat_channels(c, in); },
             .backward = [](Ctx& c, const Inputs&, const Tensor&, const Tensor& dy) {
               return std::vector<Tensor>{slice_channels(c, dy, 0, 1), slice_channels(c, dy, 1, 3),
                                          slice_channels(c, dy, 4, 2)};
             }},
      OpCase{.name = "concat_channels/batch1_odd",
             .shapes = {{1, 2, 1, 5}, {1, 1, 1, 5}},
             .check_grad = {true, true},
             .forward = [](Ctx& c, const Inputs& in) { return concat_channels(c, in); },
             .backward = [](Ctx& c, const Inputs&, const Tensor&, const Tensor& dy) {
               return std::vector<Tensor>{slice_channels(c, dy, 0, 2), slice_channels(c, dy, 2, 1)};
             }},
      OpCase{.name = "slice_channels",
             .shapes = {{2, 5, 3, 1}},
             .check_grad = {true},
             .forward = [](Ctx& c, const Inputs& in) { return slice_channels(c, in[0], 1, 3); },
             .backward = [](Ctx& c, const Inputs&, const Tensor&, const Tensor& dy) {
               // The adjoint of a slice is the gradient placed back between zero channels.
               Tensor z = c.alloc_zeros(Shape{2, 1, 3, 1}, dy.dtype());
               const Tensor parts[] = {z, dy, z};
               return std::vector<Tensor>{concat_channels(c, parts)};
             }},
      // Larger shapes for the CUDA comparison: float4 and scalar rows, multi-block grids, the
      // generic (short-row) kernel, scalars broadcast over long rows.
      big(add_case("add/large_same_shape_vec", {3, 5, 64, 64}, {3, 5, 64, 64})),
      big(add_case("add/odd_same_shape", {3, 7, 13}, {3, 7, 13})),
      big(add_case("add/scalar_over_long_rows", {1}, {5, 1003})),
      big(sub_case("sub/short_rows_generic", {50, 3, 7}, {50, 1, 7})),
      big(mul_case("mul/nchw_by_nc11_odd_large", {4, 8, 33, 35}, {4, 8, 1, 1})),
      big(mul_case("mul/nchw_by_n1hw_large", {2, 3, 64, 68}, {2, 1, 64, 68})),
      big(mul_case("mul/outer_large", {300, 1}, {1, 260})),
      big(mul_case("mul/batch1_n1hw_odd", {1, 5, 17, 19}, {1, 1, 17, 19})),
      OpCase{.name = "scale/unaligned_view",
             .shapes = {{5, 9, 7}},
             .check_grad = {true},
             .forward = [](Ctx& c, const Inputs& in) { return scale(c, in[0].slice0(1, 4), -2.5); },
             .backward = [](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
               return std::vector<Tensor>{place_rows_after_first(c, in[0].shape(), scale(c, dy, -2.5))};
             }},
      big(OpCase{.name = "scale/large_vec",
                 .shapes = {{4, 100, 101}},
                 .check_grad = {true},
                 .forward = [](Ctx& c, const Inputs& in) { return scale(c, in[0], 0.3); },
                 .backward = [](Ctx& c, const Inputs&, const Tensor&, const Tensor& dy) {
                   return std::vector<Tensor>{scale(c, dy, 0.3)};
                 }}),
      big(OpCase{.name = "axpy/unaligned_view_large",
                 .shapes = {{5, 99, 101}, {4, 99, 101}},
                 .check_grad = {true, true},
                 .forward =
                     [](Ctx& c, const Inputs& in) {
                       Tensor y = c.alloc(in[1].shape(), in[1].dtype());
                       y.copy_from(in[1]);
                       axpy(c, -1.5, in[0].slice0(1, 4), y);
                       return y;
                     },
                 .backward = [](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
                   return std::vector<Tensor>{place_rows_after_first(c, in[0].shape(), scale(c, dy, -1.5)),
                                              scale(c, dy, 1)};
                 }}),
      // sum_to on the CUDA paths: last dimension reduced with slices split over blocks (bias-like),
      // short runs (incremental index tracking), several kept and reduced dimensions; last
      // dimension kept with 2-D and flat grids, with and without slice partials.
      big(sum_to_case("sum_to/bias_like_large_split", {8, 16, 40, 40}, {1, 16, 1, 1})),
      big(sum_to_case("sum_to/short_runs", {3, 4, 5, 6}, {1, 4, 1, 1})),
      big(sum_to_case("sum_to/two_kept_one_reduced", {4, 3, 5, 6}, {4, 1, 5, 1})),
      big(sum_to_case("sum_to/over_channels_large", {4, 9, 50, 50}, {4, 1, 50, 50})),
      big(sum_to_case("sum_to/keep_last_flat_split", {600, 40}, {1, 40})),
      big(sum_to_case("sum_to/keep_last_2d_split", {300, 200}, {200})),
      big(sum_to_case("sum_to/keep_last_two_reduced_split", {7, 4, 5, 6}, {1, 4, 1, 6})),
      big(sum_to_case("sum_to/per_channel_batch1_odd", {1, 5, 13, 11}, {1, 5, 1, 1})),
      big(OpCase{.name = "sum/large_split",
                 .shapes = {{1000, 37}},
                 .check_grad = {true},
                 .forward = [](Ctx& c, const Inputs& in) { return sum(c, in[0]); },
                 .backward = [](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
                   return std::vector<Tensor>{broadcast_like(c, dy, in[0].shape())};
                 }}),
      big(OpCase{.name = "mean/large_odd",
                 .shapes = {{3, 1001, 7}},
                 .check_grad = {true},
                 .forward = [](Ctx& c, const Inputs& in) { return mean(c, in[0]); },
                 .backward = [](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
                   return std::vector<Tensor>{scale(c, broadcast_like(c, dy, in[0].shape()), 1.0 / 21021)};
                 }}),
      big(OpCase{.name = "concat_channels/large_odd_hw",
                 .shapes = {{2, 3, 31, 33}, {2, 5, 31, 33}},
                 .check_grad = {true, true},
                 .forward = [](Ctx& c, const Inputs& in) { return concat_channels(c, in); },
                 .backward = [](Ctx& c, const Inputs&, const Tensor&, const Tensor& dy) {
                   return std::vector<Tensor>{slice_channels(c, dy, 0, 3), slice_channels(c, dy, 3, 5)};
                 }}),
      big(OpCase{.name = "concat_channels/large_vec",
                 .shapes = {{3, 4, 32, 40}, {3, 8, 32, 40}, {3, 1, 32, 40}},
                 .check_grad = {true, true, true},
                 .forward = [](Ctx& c, const Inputs& in) { return concat_channels(c, in); },
                 .backward = [](Ctx& c, const Inputs&, const Tensor&, const Tensor& dy) {
                   return std::vector<Tensor>{slice_channels(c, dy, 0, 4), slice_channels(c, dy, 4, 8),
                                              slice_channels(c, dy, 12, 1)};
                 }}),
      embedding_case("embedding/duplicates", {6, 4}, {2, 0, 5, 2, 3}),
      big(embedding_case("embedding/odd_width_many_duplicates", {50, 130},
                         {7, 3, 7, 49, 0, 3, 7, 12, 12, 12, 0, 49, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                          16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 7})),
      big(embedding_case("embedding/vec_width", {20, 256},
                         {19, 0, 5, 5, 5, 5, 18, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
                          0, 0, 3, 3, 9, 19})),
      embedding_case("embedding/batch1", {3, 5}, {1}),
      feature_filter_case("feature_filter/embedding_mul_sum_to_sigmoid", {2, 4, 3, 3}, 5, {3, 1}),
      feature_filter_case("feature_filter/batch1_odd", {1, 3, 2, 5}, 4, {2}),
      big(feature_filter_case("feature_filter/large", {4, 16, 20, 20}, 10, {9, 0, 9, 4})),
  };
  return cases;
}

}  // namespace sal::test
