// optim.cu: in-place optimizer steps, elementwise over `total` parameters.
//
//   sgd_update   param, grad, velocity (all the same shape) -> param, velocity updated in place
//       g = grad + wd*param (wd != 0); with momentum: v = momentum*v + g, g = nesterov ? g + momentum*v : v;
//       param -= lr*g                                               (PyTorch SGD, dampening 0)
//   adam_update  param, grad, m, v -> all but grad updated in place
//       g = grad + wd*param (wd != 0), m = b1*m + (1-b1)*g, v = b2*v + (1-b2)*g^2, c1 = 1-b1^t, c2 = 1-b2^t
//       torch: param -= (lr/c1) * m / (sqrt(v)/sqrt(c2) + eps)
//       keras: param -= (lr*sqrt(c2)/c1) * m / (sqrt(v) + eps)
//       AdamW (decoupled weight decay): param *= decay = 1-lr*wd first (computed by the host), wd then 0
//   rmsprop_update  param, grad, square_avg, buf, gavg -> all but grad updated in place (PyTorch RMSprop)
//       g = grad + wd*param; s = rho*s + (1-rho)*g^2; centered: a = rho*a + (1-rho)*g, d = sqrt(s-a^2)+eps,
//       else d = sqrt(s)+eps; momentum: b = mu*b + g/d, param -= lr*b; else param -= lr*(g/d)
//   The step-dependent scalars (lr/c1 or lr*sqrt(c2)/c1, and sqrt(c2)) are computed by the host in double.
//   adam_update_multi: the same step over many tensors in one launch; tensor t's arrays are found through
//   a table of device pointers and a prefix sum of sizes (binary search per element);
//   adam_update_multi_device_step takes t from device memory (CUDA-graph replays).
#include "common.cuh"

extern "C" __global__ void sgd_update(float* __restrict__ param, const float* __restrict__ grad,
                                      float* __restrict__ velocity, i64 total, float lr, float momentum,
                                      i64 nesterov, float weight_decay) {
  GRID_STRIDE_LOOP(e, total) {
    const float p = param[e];
    float g = grad[e];
    if (weight_decay != 0.f) g += weight_decay * p;
    if (momentum != 0.f) {
      const float v = momentum * velocity[e] + g;
      velocity[e] = v;
      g = nesterov ? g + momentum * v : v;
    }
    param[e] = p - lr * g;
  }
}

__device__ __forceinline__ void adam_element(float* param, const float* grad, float* m, float* v, i64 e,
                                             float beta1, float beta2, float eps, float weight_decay,
                                             float step_size, float sqrt_c2, int keras, float decay) {
  const float p = decay != 1.f ? param[e] * decay : param[e];
  float g = grad[e];
  if (weight_decay != 0.f) g += weight_decay * p;
  const float mn = beta1 * m[e] + (1.f - beta1) * g;
  const float vn = beta2 * v[e] + (1.f - beta2) * g * g;
  m[e] = mn;
  v[e] = vn;
  const float denom = keras ? sqrtf(vn) + eps : sqrtf(vn) / sqrt_c2 + eps;
  param[e] = p - step_size * (mn / denom);
}

extern "C" __global__ void adam_update(float* __restrict__ param, const float* __restrict__ grad,
                                       float* __restrict__ m, float* __restrict__ v, i64 total, float beta1,
                                       float beta2, float eps, float weight_decay, float step_size,
                                       float sqrt_c2, i64 keras, float decay) {
  GRID_STRIDE_LOOP(e, total) {
    adam_element(param, grad, m, v, e, beta1, beta2, eps, weight_decay, step_size, sqrt_c2, (int)keras,
                 decay);
  }
}

// adam_update over T tensors: table (4, T) of device pointers (rows param, grad, m, v), offsets (T+1,) the
// prefix sums of their sizes; element i belongs to the last tensor t with offsets[t] <= i (binary search)
__device__ __forceinline__ void adam_multi(const unsigned long long* table, const i64* offsets, i64 T,
                                           float beta1, float beta2, float eps, float weight_decay,
                                           float step_size, float sqrt_c2, int keras, float decay) {
  GRID_STRIDE_LOOP(i, offsets[T]) {
    i64 lo = 0, hi = T - 1;
    while (lo < hi) {
      const i64 mid = (lo + hi + 1) >> 1;
      if (offsets[mid] <= i)
        lo = mid;
      else
        hi = mid - 1;
    }
    adam_element((float*)table[lo], (const float*)table[T + lo], (float*)table[2 * T + lo],
                 (float*)table[3 * T + lo], i - offsets[lo], beta1, beta2, eps, weight_decay, step_size,
                 sqrt_c2, keras, decay);
  }
}

extern "C" __global__ void adam_update_multi(const unsigned long long* __restrict__ table,
                                             const i64* __restrict__ offsets, i64 T, float beta1, float beta2,
                                             float eps, float weight_decay, float step_size, float sqrt_c2,
                                             i64 keras, float decay) {
  adam_multi(table, offsets, T, beta1, beta2, eps, weight_decay, step_size, sqrt_c2, (int)keras, decay);
}

// The same with the step count t read from device memory, so that a CUDA graph, whose kernel arguments are
// frozen at capture, can advance it (the captured step increments the counter). The bias-correction
// scalars are computed in double from the double hyperparameters, as the host does for adam_update_multi.
extern "C" __global__ void adam_update_multi_device_step(const unsigned long long* __restrict__ table,
                                                         const i64* __restrict__ offsets, i64 T,
                                                         const i64* __restrict__ step, double lr,
                                                         double beta1, double beta2, float eps,
                                                         float weight_decay, i64 keras, float decay) {
  const double t = (double)step[0];
  const double c1 = 1.0 - pow(beta1, t), sqrt_c2 = sqrt(1.0 - pow(beta2, t));
  const float step_size = (float)(keras ? lr * sqrt_c2 / c1 : lr / c1);
  adam_multi(table, offsets, T, (float)beta1, (float)beta2, eps, weight_decay, step_size, (float)sqrt_c2,
             (int)keras, decay);
}

extern "C" __global__ void rmsprop_update(float* __restrict__ param, const float* __restrict__ grad,
                                          float* __restrict__ square_avg, float* __restrict__ buf,
                                          float* __restrict__ gavg, i64 total, float lr, float rho, float omr,
                                          float eps, float weight_decay, float momentum, i64 use_buf,
                                          i64 centered) {
  GRID_STRIDE_LOOP(e, total) {
    const float p = param[e];
    float g = grad[e];
    if (weight_decay != 0.f) g += weight_decay * p;
    const float s = rho * square_avg[e] + omr * g * g;
    square_avg[e] = s;
    float d;
    if (centered) {
      const float a = rho * gavg[e] + omr * g;
      gavg[e] = a;
      d = sqrtf(s - a * a) + eps;
    } else {
      d = sqrtf(s) + eps;
    }
    if (use_buf) {
      const float b = momentum * buf[e] + g / d;
      buf[e] = b;
      param[e] = p - lr * b;
    } else {
      param[e] = p - lr * (g / d);
    }
  }
}
