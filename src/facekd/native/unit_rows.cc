// facekd_unit_rows: the rows of a (rows x dim) float32 matrix divided by their L2 norm,
// forward and backward in one pass each (MXNet 1.9 extension library, CPU).
//
//   forward   v_i  = w_i / n_i,                 n_i = sqrt(|w_i|^2 + eps)
//   backward  dw_i = dv_i / n_i - (dv_i . w_i) / n_i^3 * w_i
//
// eps = 1e-10 as in L2Normalization. The stock graph of the same normalisation reads and
// writes the (rows x dim) matrix about ten times a step; this reads it once forward
// (writing v) and once backward (with dv, writing dw). Sums over a row run in float32
// with SIMD lanes, the reciprocal square root in double.
#include <cmath>
#include <cstdlib>
#include <omp.h>

#include "mxnet/lib_api.h"

using namespace mxnet::ext;  // MXReturnValue, MX_SUCCESS, MXTensor, OpResource, kFloat32, REGISTER_OP

typedef std::unordered_map<std::string, std::string> Attributes;
typedef std::vector<std::vector<unsigned int> > Shapes;

static const double kEps = 1e-10;

// MXNet's own thread count: MXNET_OMP_MAX_THREADS, then OMP_NUM_THREADS, else every processor.
static int thread_count() {
  const char* names[] = {"MXNET_OMP_MAX_THREADS", "OMP_NUM_THREADS"};
  for (const char* name : names) {
    const char* value = std::getenv(name);
    if (value != nullptr && std::atoi(value) > 0) return std::atoi(value);
  }
  return omp_get_num_procs();
}

static MXReturnValue parse_attributes(const Attributes&, int* inputs, int* outputs) {
  *inputs = 1;
  *outputs = 1;
  return MX_SUCCESS;
}

static MXReturnValue infer_type(const Attributes&, std::vector<int>* in, std::vector<int>* out) {
  if ((*in)[0] >= 0 && (*in)[0] != kFloat32) {
    MX_ERROR_MSG << "facekd_unit_rows: the class centres must be float32";
    return MX_FAIL;
  }
  (*in)[0] = kFloat32;
  (*out)[0] = kFloat32;
  return MX_SUCCESS;
}

static MXReturnValue infer_shape(const Attributes&, Shapes* in, Shapes* out) {
  if ((*in)[0].size() != 2) {
    MX_ERROR_MSG << "facekd_unit_rows: needs a (rows x dim) matrix, got " << (*in)[0].size() << " axes";
    return MX_FAIL;
  }
  (*out)[0] = (*in)[0];
  return MX_SUCCESS;
}

static inline float inverse_norm(float squares) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(squares) + kEps));
}

// v = w / n for one row of dim floats
static void unit_row(const float* w, float* v, int64_t dim) {
  float squares = 0.f;
#pragma omp simd reduction(+ : squares)
  for (int64_t j = 0; j < dim; ++j) squares += w[j] * w[j];
  const float inv = inverse_norm(squares);
#pragma omp simd
  for (int64_t j = 0; j < dim; ++j) v[j] = w[j] * inv;
}

// dw = dv / n - (dv . w) / n^3 * w for one row
static void unit_row_gradient(const float* w, const float* dv, float* dw, int64_t dim) {
  float squares = 0.f, along = 0.f;
#pragma omp simd reduction(+ : squares, along)
  for (int64_t j = 0; j < dim; ++j) {
    squares += w[j] * w[j];
    along += dv[j] * w[j];
  }
  const float inv = inverse_norm(squares);
  const float radial = along * inv * inv * inv;
#pragma omp simd
  for (int64_t j = 0; j < dim; ++j) dw[j] = dv[j] * inv - radial * w[j];
}

// body(i) for every row i, the rows shared among the threads
template <typename Body>
static void each_row(int64_t rows, Body body) {
#pragma omp parallel for num_threads(thread_count()) schedule(static)
  for (int64_t i = 0; i < rows; ++i) body(i);
}

static MXReturnValue forward(const Attributes&, std::vector<MXTensor>* inputs,
                             std::vector<MXTensor>* outputs, const OpResource&) {
  MXTensor& weight = inputs->at(0);
  const float* w = weight.data<float>();
  float* v = outputs->at(0).data<float>();
  const int64_t dim = weight.shape[1];
  each_row(weight.shape[0], [=](int64_t i) { unit_row(w + i * dim, v + i * dim, dim); });
  return MX_SUCCESS;
}

// inputs: the output gradient dv, then the forward input w (and its output v, unused)
static MXReturnValue backward(const Attributes&, std::vector<MXTensor>* inputs,
                              std::vector<MXTensor>* outputs, const OpResource&) {
  const float* dv = inputs->at(0).data<float>();
  MXTensor& weight = inputs->at(1);
  const float* w = weight.data<float>();
  float* dw = outputs->at(0).data<float>();
  const int64_t dim = weight.shape[1];
  each_row(weight.shape[0], [=](int64_t i) { unit_row_gradient(w + i * dim, dv + i * dim, dw + i * dim, dim); });
  return MX_SUCCESS;
}

REGISTER_OP(facekd_unit_rows)
    .setParseAttrs(parse_attributes)
    .setInferType(infer_type)
    .setInferShape(infer_shape)
    .setForward(forward, "cpu")
    .setBackward(backward, "cpu");

MXReturnValue initialize(int version) {
  if (version < 10700) {
    MX_ERROR_MSG << "facekd_unit_rows needs MXNet 1.7 or later, this is " << version;
    return MX_FAIL;
  }
  return MX_SUCCESS;
}
