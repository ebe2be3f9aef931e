// CPU kernels: the masker's head (abs-ratio) and evidence removal (blend).
// Shapes, dtypes and devices are checked by engine/ops_mask.cpp.
#pragma once
#include "engine/context.h"

namespace sal::cpu {
// c: [N,2,H,W] -> m: [N,1,H,W], m = |c0| / (|c0| + |c1| + eps)
void abs_ratio(Ctx&, const Tensor& c, double eps, Tensor& m);
// dm: [N,1,H,W], c: [N,2,H,W] -> dc: [N,2,H,W] (sign(0) = 0)
void abs_ratio_backward(Ctx&, const Tensor& dm, const Tensor& c, double eps, Tensor& dc);
// c: [N,2,H,W] -> y: [N,1,P,Q] = resize_bilinear(abs_ratio(c, eps), P, Q) (composed, through a temporary)
void abs_ratio_upsample(Ctx&, const Tensor& c, double eps, Tensor& y);
// dy: [N,1,P,Q], c: [N,2,H,W] -> dc: [N,2,H,W] = abs_ratio_backward(resize_bilinear_backward(dy), c, eps)
void abs_ratio_upsample_backward(Ctx&, const Tensor& dy, const Tensor& c, double eps, Tensor& dc);
// x, a: [N,C,H,W], m: [N,1,H,W] -> y: [N,C,H,W], y = x*m + a*(1-m)
void blend(Ctx&, const Tensor& x, const Tensor& a, const Tensor& m, Tensor& y);
// dm: [N,1,H,W] = sum_c dy*(x-a); dx = dy*m and da = dy*(1-m) when the pointers are non-null.
void blend_backward(Ctx&, const Tensor& dy, const Tensor& x, const Tensor& a, const Tensor& m, Tensor& dm,
                    Tensor* dx, Tensor* da);
}  // namespace sal::cpu
