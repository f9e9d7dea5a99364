//! A decoder-only transformer's shape: what both the cost model (its FLOPs and bytes) and
//! the KV cache (its bytes per token and the weights beside it) need to know of a model.
//!
//! Built-in shapes are in [`catalogue`]; any other model is read from its Hugging Face
//! `config.json` ([`ModelShape::from_hf_config`]). Every MLP is gated (SwiGLU: gate, up and
//! down projections), as in every model of the catalogue. Biases (Qwen2.5's on q, k, v)
//! are left out: under 0.01% of the parameters.

pub mod catalogue;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The mixture-of-experts part of a model: each MoE layer's MLP is `experts` gated MLPs of
/// `expert_intermediate` of which a router picks `per_token` for each token, plus
/// `shared` experts every token uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Moe {
    /// Routed experts per layer.
    pub experts: u32,
    /// Routed experts each token uses (top-k).
    pub per_token: u32,
    /// Shared experts per layer, used by every token.
    pub shared: u32,
    /// Intermediate size of one expert's MLP.
    pub expert_intermediate: u32,
}

/// A decoder-only transformer with grouped-query attention (multi-head when
/// `kv_heads == heads`). Multi-head latent attention (DeepSeek's compressed KV) is not
/// modelled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelShape {
    /// Transformer layers.
    pub layers: u32,
    /// Hidden size.
    pub hidden: u32,
    /// Query heads.
    pub heads: u32,
    /// Key/value heads.
    pub kv_heads: u32,
    /// Dimension of each head.
    pub head_dim: u32,
    /// Intermediate size of the dense MLP (unused when every layer is MoE).
    pub intermediate: u32,
    /// Vocabulary size (rows of the embedding and of the output head).
    pub vocab: u32,
    /// Whether the output head shares the input embedding's weights.
    pub tied_embeddings: bool,
    /// Bytes per weight (2 for bf16, 1 for fp8).
    pub weight_bytes: f64,
    /// Bytes per KV-cache element (2 for bf16).
    pub kv_bytes: f64,
    /// The experts, for a mixture-of-experts model (every layer's MLP is MoE).
    pub moe: Option<Moe>,
}

/// Why a `config.json` could not be read as a model shape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON.
    #[error("not valid JSON: {0}")]
    Json(String),
    /// A required key is missing or is not a positive whole number.
    #[error("key '{0}' is missing or not a positive whole number")]
    Key(&'static str),
    /// A value that makes no model.
    #[error("{0}")]
    Invalid(String),
}

impl ModelShape {
    /// Parameters of one layer's attention (q, k, v and output projections).
    pub fn attention_params(&self) -> f64 {
        let (h, q, kv) = (
            f64::from(self.hidden),
            f64::from(self.heads * self.head_dim),
            f64::from(self.kv_heads * self.head_dim),
        );
        h * q + 2.0 * h * kv + q * h
    }

    /// Parameters of one gated MLP of intermediate size `inter`.
    fn mlp_params(&self, inter: u32) -> f64 {
        3.0 * f64::from(self.hidden) * f64::from(inter)
    }

    /// Parameters of one routed expert (zero for a dense model).
    pub fn expert_params(&self) -> f64 {
        self.moe
            .map_or(0.0, |m| self.mlp_params(m.expert_intermediate))
    }

    /// Parameters of one layer that every token uses: attention, norms, and the dense MLP
    /// or the router and shared experts.
    fn layer_params_always(&self) -> f64 {
        let mlp = match self.moe {
            None => self.mlp_params(self.intermediate),
            Some(m) => {
                f64::from(self.hidden) * f64::from(m.experts)
                    + f64::from(m.shared) * self.expert_params()
            }
        };
        self.attention_params() + mlp + 2.0 * f64::from(self.hidden)
    }

    /// Rows x columns of the embedding table.
    pub fn table(&self) -> f64 {
        f64::from(self.vocab) * f64::from(self.hidden)
    }

    /// All parameters, embeddings and output head included.
    pub fn params(&self) -> f64 {
        let experts = self.moe.map_or(0.0, |m| f64::from(m.experts)) * self.expert_params();
        let tables = if self.tied_embeddings { 1.0 } else { 2.0 };
        f64::from(self.layers) * (self.layer_params_always() + experts)
            + f64::from(self.hidden)
            + tables * self.table()
    }

    /// Parameters of the layers and final norm that one token runs through: every routed
    /// expert it uses, none it does not; embeddings and output head excluded.
    pub fn active_body_params(&self) -> f64 {
        let routed = self.moe.map_or(0.0, |m| f64::from(m.per_token)) * self.expert_params();
        f64::from(self.layers) * (self.layer_params_always() + routed) + f64::from(self.hidden)
    }

    /// Expected distinct routed experts per layer that `tokens` tokens use, each picking
    /// `k` of `E` experts uniformly: `E (1 - (1 - k/E)^tokens)` (0 for a dense model).
    pub fn experts_touched(&self, tokens: f64) -> f64 {
        self.moe.map_or(0.0, |m| {
            let e = f64::from(m.experts);
            e * (1.0 - (1.0 - f64::from(m.per_token) / e).powf(tokens))
        })
    }

    /// Bytes of all the weights.
    pub fn weights_bytes(&self) -> f64 {
        self.params() * self.weight_bytes
    }

    /// KV-cache bytes of one token, all layers: layers x KV heads x head dim x 2 (K and V)
    /// x bytes per element.
    pub fn kv_bytes_per_token(&self) -> f64 {
        f64::from(self.layers)
            * f64::from(self.kv_heads)
            * f64::from(self.head_dim)
            * 2.0
            * self.kv_bytes
    }

    /// Fraction of the KV cache each of `tp` tensor-parallel GPUs holds: its share of the
    /// KV heads, `ceil(kv_heads / tp) / kv_heads` (a head is replicated, not split, when
    /// `tp` exceeds the KV heads).
    pub fn kv_share(&self, tp: u32) -> f64 {
        f64::from(self.kv_heads.div_ceil(tp)) / f64::from(self.kv_heads)
    }

    /// Checks that the shape describes a model.
    pub fn check(&self) -> Result<(), String> {
        let counts = [
            ("layers", self.layers),
            ("hidden", self.hidden),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
            ("vocab", self.vocab),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be at least 1"));
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(format!(
                "heads ({}) must be a multiple of kv_heads ({})",
                self.heads, self.kv_heads
            ));
        }
        for (name, b) in [("weight", self.weight_bytes), ("KV", self.kv_bytes)] {
            if !(b > 0.0 && b <= 8.0) {
                return Err(format!("{name} bytes must be in (0, 8] (got {b})"));
            }
        }
        match self.moe {
            None if self.intermediate == 0 => {
                Err("a dense model needs intermediate_size >= 1".into())
            }
            Some(m) if m.experts == 0 || m.per_token == 0 || m.per_token > m.experts => {
                Err(format!(
                    "experts per token ({}) must be from 1 to the number of experts ({})",
                    m.per_token, m.experts
                ))
            }
            Some(m) if m.expert_intermediate == 0 => {
                Err("an MoE model needs an expert intermediate size >= 1".into())
            }
            _ => Ok(()),
        }
    }

    /// The shape in a Hugging Face `config.json` (a multimodal config's `text_config` is
    /// used when present). Keys: `num_hidden_layers`, `hidden_size`,
    /// `num_attention_heads`, `num_key_value_heads` (default: the heads), `head_dim`
    /// (default: hidden / heads), `intermediate_size`, `vocab_size`,
    /// `tie_word_embeddings` (default false); experts from `num_local_experts` (Mixtral,
    /// Llama 4), `num_experts` (Qwen MoE) or `n_routed_experts` (DeepSeek), with
    /// `num_experts_per_tok`, `n_shared_experts` or `num_shared_experts` (default 0; Llama
    /// 4: 1) and `moe_intermediate_size` (default `intermediate_size`). Weights and KV are
    /// 2 bytes (bf16) unless `quantization_config` names an fp8 method or compressed-tensors'
    /// `float-quantized` format (then weights are 1 byte); other quantizations (int4, int8)
    /// are read as bf16.
    pub fn from_hf_config(json: &str) -> Result<ModelShape, ConfigError> {
        let root: Value =
            serde_json::from_str(json).map_err(|e| ConfigError::Json(e.to_string()))?;
        let c = root.get("text_config").unwrap_or(&root);
        let get = |key: &str| -> Option<u32> {
            c.get(key)
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        let need = |key: &'static str| get(key).filter(|&v| v > 0).ok_or(ConfigError::Key(key));
        let (layers, hidden, heads, vocab) = (
            need("num_hidden_layers")?,
            need("hidden_size")?,
            need("num_attention_heads")?,
            need("vocab_size")?,
        );
        let experts = get("num_local_experts")
            .or_else(|| get("num_experts"))
            .or_else(|| get("n_routed_experts"))
            .filter(|&e| e > 1);
        let intermediate = get("intermediate_size").unwrap_or(0);
        // Llama 4 names its experts' size intermediate_size and its dense MLPs'
        // intermediate_size_mlp.
        let dense_intermediate = get("intermediate_size_mlp").unwrap_or(intermediate);
        if experts.is_some() && get("interleave_moe_layer_step").is_some_and(|s| s > 1) {
            return Err(ConfigError::Invalid(
                "interleave_moe_layer_step > 1 mixes dense and MoE layers, which is not modelled (every layer of an MoE is MoE)".into(),
            ));
        }
        let llama4 = c.get("model_type").and_then(Value::as_str) == Some("llama4_text");
        let moe = match experts {
            None => None,
            Some(experts) => Some(Moe {
                experts,
                per_token: need("num_experts_per_tok")?,
                shared: get("n_shared_experts")
                    .or_else(|| get("num_shared_experts"))
                    .unwrap_or(u32::from(llama4)),
                expert_intermediate: get("moe_intermediate_size").unwrap_or(intermediate),
            }),
        };
        // "fp8" (quant_method fp8, fbgemm_fp8) or compressed-tensors' "float-quantized"
        // (8-bit float weights, as in RedHat's FP8-dynamic checkpoints).
        let fp8 = root.get("quantization_config").is_some_and(|q| {
            let q = q.to_string().to_ascii_lowercase();
            q.contains("fp8") || q.contains("float-quantized")
        });
        let shape = ModelShape {
            layers,
            hidden,
            heads,
            kv_heads: get("num_key_value_heads").unwrap_or(heads),
            head_dim: get("head_dim").unwrap_or(hidden / heads),
            intermediate: dense_intermediate,
            vocab,
            tied_embeddings: c
                .get("tie_word_embeddings")
                .or_else(|| root.get("tie_word_embeddings"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
            weight_bytes: if fp8 { 1.0 } else { 2.0 },
            kv_bytes: 2.0,
            moe,
        };
        shape.check().map_err(ConfigError::Invalid)?;
        Ok(shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dense_config_reads_back_the_catalogue_shape() {
        let json = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
            "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
            "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": false,
            "torch_dtype": "bfloat16"}"#;
        assert_eq!(
            ModelShape::from_hf_config(json).unwrap(),
            ModelShape::LLAMA_3_1_8B
        );
    }

    #[test]
    fn moe_keys_are_read() {
        let json = r#"{"hidden_size": 2048, "intermediate_size": 6144, "head_dim": 128,
            "num_attention_heads": 32, "num_hidden_layers": 48, "num_key_value_heads": 4,
            "vocab_size": 151936, "num_experts": 128, "num_experts_per_tok": 8,
            "moe_intermediate_size": 768}"#;
        let m = ModelShape::from_hf_config(json).unwrap();
        assert_eq!(m, catalogue::find("qwen3-30b-a3b").unwrap().shape);
        let mixtral = r#"{"hidden_size": 4096, "intermediate_size": 14336,
            "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
            "vocab_size": 32000, "num_local_experts": 8, "num_experts_per_tok": 2}"#;
        let m = ModelShape::from_hf_config(mixtral).unwrap();
        assert_eq!(m.moe.unwrap().expert_intermediate, 14336);
        assert_eq!(m, catalogue::find("mixtral-8x7b").unwrap().shape);
    }

    /// RedHat's FP8-dynamic Llama 4 Scout: a multimodal config whose text_config holds the
    /// shape, compressed-tensors fp8 weights, one shared expert.
    #[test]
    fn a_multimodal_fp8_config_reads_its_text_model() {
        let json = r#"{"architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4",
            "quantization_config": {"config_groups": {"group_0": {"weights": {"num_bits": 8,
              "type": "float"}}}, "format": "float-quantized", "quant_method": "compressed-tensors"},
            "text_config": {"model_type": "llama4_text", "head_dim": 128, "hidden_size": 5120,
              "intermediate_size": 8192, "intermediate_size_mlp": 16384,
              "num_attention_heads": 40, "num_experts_per_tok": 1, "num_hidden_layers": 48,
              "num_key_value_heads": 8, "num_local_experts": 16, "vocab_size": 202048,
              "interleave_moe_layer_step": 1}}"#;
        let m = ModelShape::from_hf_config(json).unwrap();
        assert_eq!(m, catalogue::find("llama-4-scout-fp8").unwrap().shape);
        assert_eq!(m.weight_bytes, 1.0);
    }

    #[test]
    fn bad_configs_name_the_key() {
        assert!(matches!(
            ModelShape::from_hf_config("{"),
            Err(ConfigError::Json(_))
        ));
        let no_layers = r#"{"hidden_size": 64, "num_attention_heads": 4, "vocab_size": 10,
            "intermediate_size": 128}"#;
        assert_eq!(
            ModelShape::from_hf_config(no_layers),
            Err(ConfigError::Key("num_hidden_layers"))
        );
        let bad_k = r#"{"hidden_size": 64, "num_attention_heads": 4, "vocab_size": 10,
            "num_hidden_layers": 2, "num_local_experts": 4, "num_experts_per_tok": 5,
            "intermediate_size": 128}"#;
        assert!(matches!(
            ModelShape::from_hf_config(bad_k),
            Err(ConfigError::Invalid(_))
        ));
        let mixed = bad_k.replace(
            "\"num_experts_per_tok\": 5",
            "\"num_experts_per_tok\": 1, \"interleave_moe_layer_step\": 2",
        );
        let err = ModelShape::from_hf_config(&mixed).unwrap_err().to_string();
        assert!(err.contains("interleave_moe_layer_step"), "{err}");
    }

    /// Parameter counts by hand: Llama-3.1-8B's safetensors hold 8,030,261,248; Mixtral
    /// 8x7B's 46,702,792,704 of which 12.9e9 are active per token.
    #[test]
    fn parameter_counts_match_the_checkpoints() {
        assert_eq!(ModelShape::LLAMA_3_1_8B.params(), 8_030_261_248.0);
        let mixtral = catalogue::find("mixtral-8x7b").unwrap().shape;
        assert_eq!(mixtral.params(), 46_702_792_704.0);
        // Per layer: attention 41,943,040 + router 32,768 + norms 8,192 + 2 experts of
        // 176,160,768; 32 layers, the final norm and two 131,072,000-weight tables.
        let active = 32.0 * (41_943_040.0 + 32_768.0 + 8_192.0 + 2.0 * 176_160_768.0) + 4096.0;
        assert_eq!(mixtral.active_body_params(), active);
        assert!((active + 2.0 * 131_072_000.0 - 12.88e9).abs() < 0.01e9);
    }

    #[test]
    fn experts_touched_grows_from_k_to_all() {
        let m = catalogue::find("mixtral-8x7b").unwrap().shape;
        assert_eq!(m.experts_touched(1.0), 2.0);
        // Two tokens: 8 (1 - (3/4)^2) = 3.5 experts.
        assert!((m.experts_touched(2.0) - 3.5).abs() < 1e-12);
        assert!(m.experts_touched(1000.0) > 8.0 - 1e-9);
        assert_eq!(ModelShape::LLAMA_3_1_8B.experts_touched(100.0), 0.0);
    }
}
