#!/usr/bin/env bash
# Starts vLLM's OpenAI server for one model, taken from the first place that has it:
#   1. a model directory: $MODEL_CACHE_DIR/$MODEL_NAME with a config.json (the CPU image's baked
#      tiny model, or a volume someone mounted): no network;
#   2. S3: $MODEL_S3_URI (s3://bucket/prefix), weights streamed straight into GPU memory by the
#      Run:ai model streamer bundled with the vLLM image (credentials from Pod Identity/IRSA).
#      This is how the Kubernetes engine loads weights: no init container, no copy on disk.
# Anything else fails at once with a message: an engine must never fall back to a hub download.
# Both engine images run it, so every engine gets the same serving flags (below).
#
# Environment:
#   MODEL_NAME       required; served under this name (the gateway routes by it)
#   MODEL_CACHE_DIR  default /models
#   MODEL_S3_URI     optional; s3://... holding config.json, tokenizer and safetensors
#   PORT             default 8000
# Extra arguments are passed to vLLM unchanged (e.g. --max-model-len 8192).
set -euo pipefail

: "${MODEL_NAME:?MODEL_NAME must name the model to serve}"
cache_dir="${MODEL_CACHE_DIR:-/models}"
port="${PORT:-8000}"
local_path="${cache_dir%/}/${MODEL_NAME}"

if [[ -f "${local_path}/config.json" ]]; then
  echo "inferstack-engine: serving ${MODEL_NAME} from the mounted cache ${local_path}" >&2
  source_args=(--model "${local_path}")
elif [[ -n "${MODEL_S3_URI:-}" ]]; then
  if [[ "${MODEL_S3_URI}" != s3://* ]]; then
    echo "inferstack-engine: MODEL_S3_URI must start with s3:// (got '${MODEL_S3_URI}')" >&2
    exit 64
  fi
  echo "inferstack-engine: streaming ${MODEL_NAME} from ${MODEL_S3_URI}" >&2
  source_args=(--model "${MODEL_S3_URI}" --load-format runai_streamer)
else
  echo "inferstack-engine: ${MODEL_NAME} is not in ${cache_dir} and MODEL_S3_URI is not set" >&2
  exit 66
fi

# HF_HUB_OFFLINE: with a local or S3 model there is nothing to fetch from a hub, and a silent
# hub download on a GPU node is exactly what this entrypoint exists to prevent.
export HF_HUB_OFFLINE=1
# Prefix caching with sha256_cbor: block hashes are the same in every process (vLLM seeds them
# with a fixed value for cryptographic hashes unless PYTHONHASHSEED is set: never set it), so the
# gateway can compute them from a prompt. KV-cache events on 5557 tell it which engine holds what.
exec python3 -m vllm.entrypoints.openai.api_server \
  "${source_args[@]}" \
  --served-model-name "${MODEL_NAME}" \
  --host 0.0.0.0 --port "${port}" \
  --enable-prefix-caching --prefix-caching-hash-algo sha256_cbor \
  --kv-events-config '{"enable_kv_cache_events": true, "publisher": "zmq", "endpoint": "tcp://*:5557", "topic": "kv"}' \
  "$@"
