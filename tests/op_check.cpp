#include "tests/op_check.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace sal::test {

std::vector<OpCase>& registry() {
  static std::vector<OpCase> cases;
  return cases;
}

std::vector<double> uniform(const Shape& s, std::mt19937_64& rng, double lo, double hi) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(static_cast<size_t>(s.numel()));
  for (double& x : v) x = u(rng);
  return v;
}

Tensor random_images(int64_t n, int64_t size, uint32_t seed, DType dtype) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> v(static_cast<size_t>(n * 3 * size * size));
  for (double& x : v) x = u(gen);
  return Tensor::from_values(v, Shape{n, 3, size, size}, dtype);
}

std::vector<double> away_from_zero(const Shape& s, std::mt19937_64& rng, double gap) {
  std::uniform_real_distribution<double> u(gap, 1.0);
  std::bernoulli_distribution sign(0.5);
  std::vector<double> v(static_cast<size_t>(s.numel()));
  for (double& x : v) x = sign(rng) ? u(rng) : -u(rng);
  return v;
}

std::vector<double> distinct(const Shape& s, std::mt19937_64& rng, double spacing) {
  std::vector<double> v(static_cast<size_t>(s.numel()));
  double offset = -spacing * static_cast<double>(v.size()) / 2;
  for (size_t i = 0; i < v.size(); ++i) v[i] = offset + spacing * static_cast<double>(i);
  std::shuffle(v.begin(), v.end(), rng);
  return v;
}

Inputs make_inputs(const OpCase& c, DType float_dtype, uint64_t seed) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + std::hash<std::string>{}(c.name));
  Inputs in;
  for (size_t i = 0; i < c.shapes.size(); ++i) {
    DType dt = (i < c.dtypes.size() && c.dtypes[i] == DType::I32) ? DType::I32 : float_dtype;
    std::vector<double> v = c.init ? c.init(static_cast<int>(i), c.shapes[i], rng) : std::vector<double>{};
    if (v.empty()) v = uniform(c.shapes[i], rng);
    in.push_back(Tensor::from_values(v, c.shapes[i], dt));
  }
  return in;
}

namespace {

// L = sum(forward(in) * dy)
double objective(const OpCase& c, Ctx& ctx, const Inputs& in, const Tensor& dy) {
  Tensor y = c.forward(ctx, in);
  std::vector<double> yv = y.values(), g = dy.values();
  return std::inner_product(yv.begin(), yv.end(), g.begin(), 0.0);
}

}  // namespace

GradReport check_gradients(const OpCase& c) {
  Ctx ctx(Device::CPU);
  Inputs in = make_inputs(c, DType::F64);
  Tensor y = c.forward(ctx, in);
  std::mt19937_64 rng(7);
  Tensor dy = Tensor::from_values(uniform(y.shape(), rng), y.shape(), DType::F64);
  std::vector<Tensor> grads = c.backward(ctx, in, y, dy);

  GradReport rep;
  double worst = -1;
  for (size_t i = 0; i < in.size(); ++i) {
    if (i >= c.check_grad.size() || !c.check_grad[i]) continue;
    if (i >= grads.size() || !grads[i].defined()) {
      rep.ok = false;
      rep.message = cat(c.name, ": backward returned no gradient for input ", i);
      return rep;
    }
    if (grads[i].shape() != in[i].shape()) {
      rep.ok = false;
      rep.message = cat(c.name, ": gradient of input ", i, " has shape ", grads[i].shape().str(), ", input ",
                        in[i].shape().str());
      return rep;
    }
    std::vector<double> analytic = grads[i].values();
    int64_t n = in[i].numel();
    std::vector<int64_t> idx(static_cast<size_t>(n));
    std::iota(idx.begin(), idx.end(), 0);
    if (n > c.max_fd_elements) {
      std::shuffle(idx.begin(), idx.end(), rng);
      idx.resize(static_cast<size_t>(c.max_fd_elements));
    }
    double* p = in[i].data<double>();
    for (int64_t j : idx) {
      double saved = p[j];
      p[j] = saved + c.fd_step;
      double lp = objective(c, ctx, in, dy);
      p[j] = saved - c.fd_step;
      double lm = objective(c, ctx, in, dy);
      p[j] = saved;
      double numeric = (lp - lm) / (2 * c.fd_step);
      double err = std::abs(analytic[static_cast<size_t>(j)] - numeric) / (1 + std::abs(numeric));
      if (err > worst) {
        worst = err;
        if (err > c.grad_tol) {
          rep.ok = false;
          rep.message = cat(c.name, ": input ", i, " element ", j, ": analytic ", analytic[static_cast<size_t>(j)],
                            ", finite difference ", numeric, " (relative error ", err, ", tolerance ", c.grad_tol, ")");
        }
      }
    }
  }
  return rep;
}

double max_rel_diff(const Tensor& a, const Tensor& b) {
  SAL_CHECK(a.shape() == b.shape(), "max_rel_diff: ", a.desc(), " vs ", b.desc());
  std::vector<double> av = a.values(), bv = b.values();
  double worst = 0;
  for (size_t i = 0; i < av.size(); ++i) {
    double e = std::abs(av[i] - bv[i]) / (1 + std::abs(bv[i]));
    if (std::isnan(e)) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, e);
  }
  return worst;
}

bool all_close(const Tensor& t, const std::vector<double>& want, double tol) {
  if (t.numel() != static_cast<int64_t>(want.size())) return false;
  std::vector<double> v = t.values();
  for (size_t i = 0; i < v.size(); ++i)
    if (!(std::abs(v[i] - want[i]) <= tol)) return false;
  return true;
}

}  // namespace sal::test
