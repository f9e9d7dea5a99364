//! Built-in model shapes, each from its public Hugging Face `config.json` (the repository
//! named beside it), bf16 unless the checkpoint says otherwise.

use super::{ModelShape, Moe};

/// A built-in model: its name for `--model`, other names it answers to (Hugging Face ids
/// of checkpoints with the same shape), where its numbers come from, and its shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelEntry {
    /// Name for `--model`.
    pub name: &'static str,
    /// Other names accepted, compared without case.
    pub aliases: &'static [&'static str],
    /// The Hugging Face repository whose `config.json` gives the shape.
    pub source: &'static str,
    /// The shape.
    pub shape: ModelShape,
}

/// A dense bf16 model with untied embeddings and `head_dim = hidden / heads`, as most are.
const fn dense(
    layers: u32,
    hidden: u32,
    heads: u32,
    kv_heads: u32,
    intermediate: u32,
    vocab: u32,
) -> ModelShape {
    ModelShape {
        layers,
        hidden,
        heads,
        kv_heads,
        head_dim: hidden / heads,
        intermediate,
        vocab,
        tied_embeddings: false,
        weight_bytes: 2.0,
        kv_bytes: 2.0,
        moe: None,
    }
}

/// `base` with `experts` routed experts of `inter`, `k` per token, `shared` shared ones.
const fn moe(base: ModelShape, experts: u32, k: u32, shared: u32, inter: u32) -> ModelShape {
    ModelShape {
        moe: Some(Moe {
            experts,
            per_token: k,
            shared,
            expert_intermediate: inter,
        }),
        ..base
    }
}

impl ModelShape {
    /// Llama-3.1-8B in bf16 (meta-llama/Llama-3.1-8B): 8,030,261,248 parameters.
    pub const LLAMA_3_1_8B: ModelShape = dense(32, 4096, 32, 8, 14336, 128_256);
}

const LLAMA_3_1_70B: ModelShape = dense(80, 8192, 64, 8, 28672, 128_256);
const MIXTRAL_8X7B: ModelShape = moe(dense(32, 4096, 32, 8, 14336, 32_000), 8, 2, 0, 14336);
const MIXTRAL_8X22B: ModelShape = moe(dense(56, 6144, 48, 8, 16384, 32_000), 8, 2, 0, 16384);
const QWEN2_5_7B: ModelShape = dense(28, 3584, 28, 4, 18944, 152_064);

/// Every built-in model.
pub const MODELS: &[ModelEntry] = &[
    ModelEntry {
        name: "llama-3.1-8b",
        aliases: &[
            "meta-llama/Llama-3.1-8B",
            "meta-llama/Llama-3.1-8B-Instruct",
        ],
        source: "huggingface.co/meta-llama/Llama-3.1-8B",
        shape: ModelShape::LLAMA_3_1_8B,
    },
    ModelEntry {
        name: "llama-3.1-70b",
        aliases: &[
            "meta-llama/Llama-3.1-70B",
            "meta-llama/Llama-3.1-70B-Instruct",
        ],
        source: "huggingface.co/meta-llama/Llama-3.1-70B",
        shape: LLAMA_3_1_70B,
    },
    ModelEntry {
        name: "llama-3.1-405b",
        aliases: &["meta-llama/Llama-3.1-405B"],
        source: "huggingface.co/meta-llama/Llama-3.1-405B",
        shape: dense(126, 16384, 128, 8, 53248, 128_256),
    },
    ModelEntry {
        name: "qwen2.5-7b",
        aliases: &["Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-7B-Instruct"],
        source: "huggingface.co/Qwen/Qwen2.5-7B",
        shape: QWEN2_5_7B,
    },
    ModelEntry {
        name: "qwen2.5-32b",
        aliases: &["Qwen/Qwen2.5-32B", "Qwen/Qwen2.5-32B-Instruct"],
        source: "huggingface.co/Qwen/Qwen2.5-32B",
        shape: dense(64, 5120, 40, 8, 27648, 152_064),
    },
    ModelEntry {
        name: "qwen2.5-72b",
        aliases: &["Qwen/Qwen2.5-72B", "Qwen/Qwen2.5-72B-Instruct"],
        source: "huggingface.co/Qwen/Qwen2.5-72B",
        shape: dense(80, 8192, 64, 8, 29568, 152_064),
    },
    ModelEntry {
        name: "qwen3-14b",
        aliases: &["Qwen/Qwen3-14B"],
        source: "huggingface.co/Qwen/Qwen3-14B",
        shape: dense(40, 5120, 40, 8, 17408, 151_936),
    },
    ModelEntry {
        name: "qwen3-30b-a3b",
        aliases: &["Qwen/Qwen3-30B-A3B"],
        source: "huggingface.co/Qwen/Qwen3-30B-A3B",
        shape: moe(
            ModelShape {
                head_dim: 128,
                ..dense(48, 2048, 32, 4, 6144, 151_936)
            },
            128,
            8,
            0,
            768,
        ),
    },
    ModelEntry {
        name: "mixtral-8x7b",
        aliases: &[
            "mistralai/Mixtral-8x7B-v0.1",
            "mistralai/Mixtral-8x7B-Instruct-v0.1",
        ],
        source: "huggingface.co/mistralai/Mixtral-8x7B-v0.1",
        shape: MIXTRAL_8X7B,
    },
    ModelEntry {
        name: "mixtral-8x22b",
        aliases: &["mistralai/Mixtral-8x22B-v0.1"],
        source: "huggingface.co/mistralai/Mixtral-8x22B-v0.1",
        shape: MIXTRAL_8X22B,
    },
    ModelEntry {
        name: "mixtral-8x22b-instruct",
        aliases: &["mistralai/Mixtral-8x22B-Instruct-v0.1"],
        // The instruct model's tokenizer adds 768 control tokens (vocab 32768).
        source: "huggingface.co/mistralai/Mixtral-8x22B-Instruct-v0.1",
        shape: ModelShape {
            vocab: 32_768,
            ..MIXTRAL_8X22B
        },
    },
    ModelEntry {
        name: "llama-4-scout-fp8",
        aliases: &["RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic"],
        // text_config: every layer MoE (interleave_moe_layer_step 1), 16 experts of 8192,
        // top-1, one shared expert; fp8 weights (the output head stays bf16, not modelled).
        source: "huggingface.co/RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic",
        shape: ModelShape {
            weight_bytes: 1.0,
            ..moe(dense(48, 5120, 40, 8, 16384, 202_048), 16, 1, 1, 8192)
        },
    },
    ModelEntry {
        name: "yi-34b",
        aliases: &["01-ai/Yi-34B"],
        source: "huggingface.co/01-ai/Yi-34B",
        shape: dense(60, 7168, 56, 8, 20480, 64_000),
    },
    ModelEntry {
        name: "codellama-34b",
        aliases: &[
            "codellama/CodeLlama-34b-Instruct-hf",
            "codellama/CodeLlama-34b-hf",
        ],
        source: "huggingface.co/codellama/CodeLlama-34b-Instruct-hf",
        shape: dense(48, 8192, 64, 8, 22016, 32_000),
    },
    ModelEntry {
        name: "llama-2-7b",
        aliases: &["meta-llama/Llama-2-7b-hf"],
        source: "huggingface.co/meta-llama/Llama-2-7b-hf",
        shape: dense(32, 4096, 32, 32, 11008, 32_000),
    },
    ModelEntry {
        name: "llama-2-70b",
        aliases: &["meta-llama/Llama-2-70b-hf"],
        source: "huggingface.co/meta-llama/Llama-2-70b-hf",
        shape: dense(80, 8192, 64, 8, 28672, 32_000),
    },
    ModelEntry {
        name: "mistral-nemo-12b",
        aliases: &[
            "mistralai/Mistral-Nemo-Instruct-2407",
            "mistralai/Mistral-Nemo-Base-2407",
        ],
        source: "huggingface.co/mistralai/Mistral-Nemo-Instruct-2407",
        shape: ModelShape {
            head_dim: 128,
            ..dense(40, 5120, 32, 8, 14336, 131_072)
        },
    },
];

/// The built-in model called `name` (its name or an alias, without case).
pub fn find(name: &str) -> Option<&'static ModelEntry> {
    MODELS.iter().find(|m| {
        m.name.eq_ignore_ascii_case(name) || m.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    })
}

/// Every built-in model's name, for messages.
pub fn names() -> Vec<&'static str> {
    MODELS.iter().map(|m| m.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_a_model_with_a_unique_name() {
        let mut all: Vec<String> = Vec::new();
        for m in MODELS {
            m.shape.check().unwrap();
            all.push(m.name.to_ascii_lowercase());
            all.extend(m.aliases.iter().map(|a| a.to_ascii_lowercase()));
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "a name is given twice");
        assert_eq!(
            find("META-LLAMA/llama-3.1-8b-instruct").unwrap().name,
            "llama-3.1-8b"
        );
    }

    /// Every model of the real vLLM runs (`llmsim fidelity`) answers to its Hugging Face id.
    #[test]
    fn the_real_runs_models_are_known_by_their_ids() {
        for (id, name) in [
            ("01-ai/Yi-34B", "yi-34b"),
            ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b"),
            ("Qwen/Qwen3-14B", "qwen3-14b"),
            (
                "RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic",
                "llama-4-scout-fp8",
            ),
            ("codellama/CodeLlama-34b-Instruct-hf", "codellama-34b"),
            ("meta-llama/Llama-2-7b-hf", "llama-2-7b"),
            ("meta-llama/Llama-2-70b-hf", "llama-2-70b"),
            ("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b"),
            ("meta-llama/Llama-3.1-70B-Instruct", "llama-3.1-70b"),
            ("mistralai/Mistral-Nemo-Instruct-2407", "mistral-nemo-12b"),
            ("mistralai/Mixtral-8x7B-v0.1", "mixtral-8x7b"),
            ("mistralai/Mixtral-8x22B-v0.1", "mixtral-8x22b"),
            (
                "mistralai/Mixtral-8x22B-Instruct-v0.1",
                "mixtral-8x22b-instruct",
            ),
        ] {
            assert_eq!(find(id).map(|m| m.name), Some(name), "{id}");
        }
        assert_eq!(find("llama-4-scout-fp8").unwrap().shape.weight_bytes, 1.0);
    }

    /// KV bytes per token as the model cards' shapes give them, by hand:
    /// 2 x layers x KV heads x head dim x 2 bytes.
    #[test]
    fn kv_bytes_per_token_by_hand() {
        for (name, want) in [
            ("llama-3.1-8b", 2 * 32 * 8 * 128 * 2),     // 128 KiB
            ("llama-3.1-70b", 2 * 80 * 8 * 128 * 2),    // 320 KiB
            ("llama-3.1-405b", 2 * 126 * 8 * 128 * 2),  // 504 KiB
            ("qwen2.5-7b", 2 * 28 * 4 * 128 * 2),       // 56 KiB
            ("qwen3-30b-a3b", 2 * 48 * 4 * 128 * 2),    // 96 KiB
            ("mixtral-8x7b", 2 * 32 * 8 * 128 * 2),     // 128 KiB
            ("llama-2-7b", 2 * 32 * 32 * 128 * 2),      // 512 KiB, no GQA
            ("mistral-nemo-12b", 2 * 40 * 8 * 128 * 2), // 160 KiB
        ] {
            let m = find(name).unwrap();
            assert_eq!(m.shape.kv_bytes_per_token(), f64::from(want), "{name}");
        }
    }

    /// Total parameters against the sizes the model cards state (billions, rounded as the
    /// card rounds them).
    #[test]
    fn parameter_counts_match_the_model_cards() {
        for (name, billions, tol) in [
            ("llama-3.1-70b", 70.6, 0.1),
            ("llama-3.1-405b", 405.9, 0.5),
            ("qwen2.5-7b", 7.61, 0.01),
            // The card rounds to 32.5B; the checkpoint holds 32.76e9.
            ("qwen2.5-32b", 32.76, 0.01),
            ("qwen2.5-72b", 72.7, 0.1),
            ("qwen3-30b-a3b", 30.5, 0.1),
            ("mixtral-8x22b", 140.6, 0.5),
            ("llama-2-7b", 6.74, 0.01),
            ("yi-34b", 34.4, 0.1),
            ("mistral-nemo-12b", 12.2, 0.1),
        ] {
            let p = find(name).unwrap().shape.params() / 1e9;
            assert!((p - billions).abs() <= tol, "{name}: {p}");
        }
        // Qwen3-30B-A3B: 3.3B active per token (card), embeddings included.
        let q = find("qwen3-30b-a3b").unwrap().shape;
        let active = (q.active_body_params() + 2.0 * q.table()) / 1e9;
        assert!((active - 3.3).abs() < 0.1, "{active}");
        // Llama 4 Scout: 17B active (card); 109B total with its vision encoder, which the
        // text model leaves out.
        let s = find("llama-4-scout-fp8").unwrap().shape;
        let active = (s.active_body_params() + 2.0 * s.table()) / 1e9;
        assert!((active - 17.0).abs() < 0.5, "{active}");
        assert!((s.params() / 1e9 - 107.8).abs() < 0.1);
    }
}
