// Harness rows: softmax, log-softmax, cross-entropy, total variation and area losses.
#include "tests/op_check.h"

namespace sal::test {

namespace {

OpCase softmax_case(std::string name, Shape z) {
  return OpCase{.name = std::move(name),
                .shapes = {z},
                .check_grad = {true},
                .init = [](int, const Shape& s, std::mt19937_64& rng) { return uniform(s, rng, -3, 3); },
                .forward = [](Ctx& c, const Inputs& in) { return softmax(c, in[0]); },
                .backward = [](Ctx& c, const Inputs&, const Tensor& y, const Tensor& dy) {
                  return std::vector<Tensor>{softmax_backward(c, dy, y)};
                }};
}

OpCase log_softmax_case(std::string name, Shape z) {
  return OpCase{.name = std::move(name),
                .shapes = {z},
                .check_grad = {true},
                .init = [](int, const Shape& s, std::mt19937_64& rng) { return uniform(s, rng, -3, 3); },
                .forward = [](Ctx& c, const Inputs& in) { return log_softmax(c, in[0]); },
                .backward = [](Ctx& c, const Inputs&, const Tensor& y, const Tensor& dy) {
                  return std::vector<Tensor>{log_softmax_backward(c, dy, y)};
                }};
}

OpCase cross_entropy_case(std::string name, Shape z, std::vector<double> labels) {
  return OpCase{.name = std::move(name),
                .shapes = {z, Shape{z[0]}},
                .dtypes = {DType::F64, DType::I32},
                .check_grad = {true, false},
                .init = [labels](int i, const Shape& s, std::mt19937_64& rng) {
                  return i == 1 ? labels : uniform(s, rng, -3, 3);
                },
                .forward = [](Ctx& c, const Inputs& in) { return cross_entropy(c, in[0], in[1]); },
                .backward = [](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dloss) {
                  return std::vector<Tensor>{cross_entropy_backward(c, dloss, in[0], in[1]), Tensor()};
                }};
}

OpCase tv_case(std::string name, Shape m, double bw) {
  return OpCase{.name = std::move(name),
                .shapes = {m},
                .check_grad = {true},
                .init = [](int, const Shape& s, std::mt19937_64& rng) { return uniform(s, rng, 0, 1); },
                .forward = [bw](Ctx& c, const Inputs& in) { return tv_loss(c, in[0], bw); },
                .backward = [bw](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dloss) {
                  return std::vector<Tensor>{tv_loss_backward(c, dloss, in[0], bw)};
                }};
}

// lo/hi: the mask's value range (positive for a fractional power).
OpCase area_case(std::string name, Shape m, double power, double eps, double lo, double hi) {
  return OpCase{.name = std::move(name),
                .shapes = {m},
                .check_grad = {true},
                .init = [lo, hi](int, const Shape& s, std::mt19937_64& rng) { return uniform(s, rng, lo, hi); },
                .forward = [power, eps](Ctx& c, const Inputs& in) { return area_loss(c, in[0], power, eps); },
                .backward = [power, eps](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dloss) {
                  return std::vector<Tensor>{area_loss_backward(c, dloss, in[0], power, eps)};
                }};
}

// `c` with a per-row CUDA tolerance and a cap on finite differences (large rows).
OpCase big(OpCase c, double cuda_tol = 1e-4, int max_fd = 8) {
  c.cuda_tol = cuda_tol;
  c.max_fd_elements = max_fd;
  return c;
}

// n labels spread over [0, k).
std::vector<double> spread_labels(int64_t n, int64_t k) {
  std::vector<double> l(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) l[static_cast<size_t>(i)] = static_cast<double>((i * 7919 + 3) % k);
  return l;
}

}  // namespace

SAL_OP_CASES {
  return {
      softmax_case("softmax/3x5", {3, 5}),
      softmax_case("softmax/batch1", {1, 7}),
      log_softmax_case("log_softmax/3x5", {3, 5}),
      log_softmax_case("log_softmax/batch1", {1, 4}),
      cross_entropy_case("cross_entropy/4x5", {4, 5}, {0, 4, 2, 4}),
      cross_entropy_case("cross_entropy/batch1", {1, 3}, {2}),
      cross_entropy_case("cross_entropy/two_classes", {3, 2}, {1, 0, 1}),
      tv_case("tv_loss/border0.3", {2, 1, 4, 5}, 0.3),
      tv_case("tv_loss/paper_no_border", {1, 1, 3, 3}, 0),
      tv_case("tv_loss/one_row", {1, 1, 1, 6}, 1.5),
      tv_case("tv_loss/one_column", {1, 1, 5, 1}, 0.3),
      tv_case("tv_loss/2x2_batch3", {3, 1, 2, 2}, 0.5),
      area_case("area_loss/released_p0.3", {2, 1, 3, 4}, 0.3, 5e-4, 0.05, 1),
      area_case("area_loss/plain_mean", {1, 1, 5, 3}, 1, 0, -1, 1),
      area_case("area_loss/square_any_sign", {2, 1, 2, 3}, 2, 0.1, -1, 1),
      area_case("area_loss/sqrt_batch1", {1, 1, 3, 3}, 0.5, 0, 0.1, 1),
      // Larger shapes for the CUDA comparison: block-per-row widths (32 to 256 threads), odd
      // widths, per-sample reductions split over several blocks, batch 1 at the masker's size.
      big(softmax_case("softmax/imagenet_width", {5, 1000})),
      big(softmax_case("softmax/odd_width", {7, 37})),
      big(softmax_case("softmax/wide_batch1", {1, 3001})),
      big(log_softmax_case("log_softmax/imagenet_width", {6, 1000})),
      big(log_softmax_case("log_softmax/odd", {9, 67})),
      big(cross_entropy_case("cross_entropy/imagenet_width", {6, 1000}, spread_labels(6, 1000))),
      big(cross_entropy_case("cross_entropy/wide_batch1", {1, 2500}, {2499})),
      big(cross_entropy_case("cross_entropy/odd", {11, 129}, spread_labels(11, 129))),
      big(tv_case("tv_loss/large_split", {2, 1, 64, 80}, 0.3)),
      big(tv_case("tv_loss/odd", {3, 1, 37, 29}, 0.7)),
      big(tv_case("tv_loss/masker_224_batch1", {1, 1, 224, 224}, 0)),
      big(area_case("area_loss/large_released", {2, 1, 64, 80}, 0.3, 5e-4, 0.05, 1)),
      big(area_case("area_loss/masker_224_batch1_plain", {1, 1, 224, 224}, 1, 0, -1, 1)),
      big(area_case("area_loss/odd_square", {3, 1, 33, 35}, 2, 0.1, -1, 1)),
      big(area_case("area_loss/sqrt_large", {1, 1, 50, 50}, 0.5, 0, 0.1, 1)),
  };
}

}  // namespace sal::test
