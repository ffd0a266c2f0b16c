// `ruvllm model quantize`: llama.cpp's own quantizer, so a file quantized here is the file
// llama-quantize would have written.
#include <llama.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <string>

#include "backend.h"
#include "model.h"
#include "ruvllm/llm.h"

namespace ruvllm::llm {

void quantize_model(const std::string& in, const std::string& out, const std::string& type, int threads,
                    std::function<void(double)> progress) {
  static const std::map<std::string, llama_ftype> types = {{"q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},
                                                           {"q4_k_m", LLAMA_FTYPE_MOSTLY_Q4_K_M},
                                                           {"q5_k_m", LLAMA_FTYPE_MOSTLY_Q5_K_M},
                                                           {"q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},
                                                           {"f16", LLAMA_FTYPE_MOSTLY_F16}};
  std::string key = type;
  std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
  const auto it = types.find(key);
  if (it == types.end())
    throw Error("unsupported quantization type '" + type + "'; choose Q4_0, Q4_K_M, Q5_K_M, Q8_0 or F16");
  detail::read_gguf_info(in);  // a clear error for a missing or corrupt input
  if (std::filesystem::weakly_canonical(in) == std::filesystem::weakly_canonical(out)) {
    throw Error("quantize would overwrite its input " + in);
  }

  llama_model_quantize_params params = llama_model_quantize_default_params();
  params.ftype = it->second;
  params.nthread = threads;
  detail::LogCapture capture;
  // llama.cpp's quantizer reports no progress through its API; the caller sees start and end.
  if (progress) progress(0.0);
  if (llama_model_quantize(in.c_str(), out.c_str(), &params) != 0) {
    throw Error("quantizing " + in + " to " + type + " failed: " + capture.message("llama.cpp gave no reason"));
  }
  if (progress) progress(1.0);
}

}  // namespace ruvllm::llm
