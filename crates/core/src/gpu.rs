//! GPUs by their datasheet peaks: dense (not 2:4 sparse) tensor FLOP/s, HBM bandwidth and
//! capacity, and the bandwidth of the links between GPUs. Every number is from the vendor
//! page named beside the card; link bandwidths are per direction (half the bidirectional
//! figures datasheets quote). A card not listed is read from a TOML file of the same
//! fields ([`GpuSpec::from_toml`]).

use serde::{Deserialize, Serialize};

/// One GPU's peaks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    /// Peak dense bf16/fp16 tensor throughput, fp32 accumulate (FLOP/s).
    pub peak_flops: f64,
    /// Peak dense fp8 tensor throughput (FLOP/s); `None` for a card without fp8 (then fp8
    /// weights run at the bf16 peak).
    #[serde(default)]
    pub fp8_flops: Option<f64>,
    /// Peak memory bandwidth (bytes/s).
    pub bandwidth: f64,
    /// Memory (GB, 1e9 bytes).
    pub memory_gb: f64,
    /// Bandwidth of the GPU-to-GPU fabric within a node (NVLink, Infinity Fabric) per
    /// direction (bytes/s); `None` when GPUs talk over PCIe only.
    #[serde(default)]
    pub nvlink: Option<f64>,
    /// Host link (PCIe) bandwidth per direction (bytes/s).
    pub pcie: f64,
}

/// The kernels a serving stack runs on a card. Cards of one family run the same matrix
/// and attention kernels (built for their compute capability), so they reach like
/// fractions of what their memory can stream; another family's kernels may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// NVIDIA Ampere (sm80) and Ada (sm89): `mma.sync` matrix kernels, FlashAttention 2
    /// (FlashAttention 3 needs Hopper).
    Ampere,
    /// NVIDIA Hopper (sm90): `wgmma`/TMA matrix kernels, FlashAttention 3.
    Hopper,
    /// NVIDIA Blackwell (sm100): `tcgen05` matrix kernels.
    Blackwell,
    /// AMD CDNA 3: ROCm's kernels.
    Cdna3,
}

/// A catalogue entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuEntry {
    /// Name for `--gpu`.
    pub name: &'static str,
    /// Other accepted names.
    pub aliases: &'static [&'static str],
    /// Where the numbers come from.
    pub source: &'static str,
    /// The peaks.
    pub spec: GpuSpec,
    /// The kernel family it runs.
    pub kernels: Kernels,
    /// Memory bandwidth a STREAM copy kernel reaches on this card (or, where `source` says
    /// so, on a card with the same memory) in a published microbenchmark (bytes/s; `None`
    /// where no source was found): what a well-tuned streaming kernel achieves of
    /// [`GpuSpec::bandwidth`], which differs by memory generation (GDDR6, HBM2e, HBM3,
    /// HBM3e). Its source is named in `source`.
    pub copy_bandwidth: Option<f64>,
}

const GB: f64 = 1e9;
const T: f64 = 1e12;
/// PCIe 4.0 and 5.0 x16, per direction.
const PCIE4: f64 = 32.0 * GB;
const PCIE5: f64 = 64.0 * GB;

impl GpuSpec {
    /// NVIDIA H100 SXM5 80 GB: 989 TFLOP/s dense bf16, 3.35 TB/s HBM3.
    pub const H100: GpuSpec = GpuSpec {
        peak_flops: 989.0 * T,
        fp8_flops: Some(1979.0 * T),
        bandwidth: 3.35 * T,
        memory_gb: 80.0,
        nvlink: Some(450.0 * GB),
        pcie: PCIE5,
    };
    /// NVIDIA H200 SXM 141 GB: 989 TFLOP/s dense bf16, 4.8 TB/s HBM3e.
    pub const H200: GpuSpec = GpuSpec {
        bandwidth: 4.8 * T,
        memory_gb: 141.0,
        ..GpuSpec::H100
    };

    /// Peak FLOP/s for weights of `weight_bytes` bytes: fp8 for 1-byte weights on a card
    /// that has it, else bf16.
    pub fn flops_for(&self, weight_bytes: f64) -> f64 {
        match self.fp8_flops {
            Some(f) if weight_bytes <= 1.0 => f,
            _ => self.peak_flops,
        }
    }

    /// Reads a card from TOML text with this struct's fields (units as documented:
    /// FLOP/s, bytes/s, GB), and checks it.
    pub fn from_toml(text: &str) -> Result<GpuSpec, String> {
        let spec: GpuSpec = toml::from_str(text).map_err(|e| e.to_string())?;
        spec.check()?;
        Ok(spec)
    }

    /// Checks every peak is a positive finite number.
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [
            ("peak_flops", Some(self.peak_flops)),
            ("fp8_flops", self.fp8_flops),
            ("bandwidth", Some(self.bandwidth)),
            ("memory_gb", Some(self.memory_gb)),
            ("nvlink", self.nvlink),
            ("pcie", Some(self.pcie)),
        ] {
            if let Some(v) = v
                && !(v > 0.0 && v.is_finite())
            {
                return Err(format!("{name} must be a positive finite number (got {v})"));
            }
        }
        Ok(())
    }
}

/// Every built-in card.
pub const GPUS: &[GpuEntry] = &[
    GpuEntry {
        name: "a100-40gb",
        aliases: &["a100-40"],
        source: "NVIDIA A100 datasheet (nvidia.com/en-us/data-center/a100): 312 TFLOP/s bf16, 1,555 GB/s, NVLink 600 GB/s",
        spec: GpuSpec {
            peak_flops: 312.0 * T,
            fp8_flops: None,
            bandwidth: 1555.0 * GB,
            memory_gb: 40.0,
            nvlink: Some(300.0 * GB),
            pcie: PCIE4,
        },
        kernels: Kernels::Ampere,
        copy_bandwidth: None,
    },
    GpuEntry {
        name: "a100-80gb",
        // A100-80GB: the label of the real vLLM runs (`llmsim fidelity`).
        aliases: &["a100", "a100-80", "A100-80GB"],
        source: "NVIDIA A100 datasheet (nvidia.com/en-us/data-center/a100): 312 TFLOP/s bf16, 2,039 GB/s, NVLink 600 GB/s; copy 1.61 TB/s measured on an Azure ND A100 v4 (A100-SXM4-80GB): Azure/AI-benchmarking-guide, Azure_Results/ND_A100_v4_results.md",
        spec: GpuSpec {
            peak_flops: 312.0 * T,
            fp8_flops: None,
            bandwidth: 2039.0 * GB,
            memory_gb: 80.0,
            nvlink: Some(300.0 * GB),
            pcie: PCIE4,
        },
        kernels: Kernels::Ampere,
        copy_bandwidth: Some(1610.0 * GB),
    },
    GpuEntry {
        name: "l4",
        aliases: &[],
        source: "NVIDIA L4 datasheet (nvidia.com/en-us/data-center/l4): 121 TFLOP/s bf16, 242.5 fp8 (half the sparse figures), 300 GB/s, PCIe 4.0",
        spec: GpuSpec {
            peak_flops: 121.0 * T,
            fp8_flops: Some(242.5 * T),
            bandwidth: 300.0 * GB,
            memory_gb: 24.0,
            nvlink: None,
            pcie: PCIE4,
        },
        kernels: Kernels::Ampere,
        copy_bandwidth: None,
    },
    GpuEntry {
        name: "l40s",
        aliases: &["L40S-48GB"],
        source: "NVIDIA L40S datasheet (nvidia.com/en-us/data-center/l40s): 362 TFLOP/s bf16, 733 fp8 (dense), 864 GB/s, PCIe 4.0; copy 0.77 TB/s measured on an L40, the same AD102 board with the same 48 GB of GDDR6 at 864 GB/s (no L40S measurement was found): the scale kernel (one load and one store stream) of te42kyfo/gpu-benches at full occupancy, gpu-stream/l40.txt",
        spec: GpuSpec {
            peak_flops: 362.0 * T,
            fp8_flops: Some(733.0 * T),
            bandwidth: 864.0 * GB,
            memory_gb: 48.0,
            nvlink: None,
            pcie: PCIE4,
        },
        kernels: Kernels::Ampere,
        copy_bandwidth: Some(770.0 * GB),
    },
    GpuEntry {
        name: "h100-sxm",
        aliases: &["h100", "H100-80GB"],
        source: "NVIDIA H100 datasheet (nvidia.com/en-us/data-center/h100), SXM: 989 TFLOP/s bf16, 1,979 fp8, 3.35 TB/s, NVLink 900 GB/s, PCIe 5.0; copy 2.90 TB/s measured on an Azure ND H100 v5 (H100 80GB HBM3): AI-benchmarking-guide, Azure_Results/ND_H100_v5_results.md (as kept in the fork samuel-bohman/AI-benchmarking-guide)",
        spec: GpuSpec::H100,
        kernels: Kernels::Hopper,
        copy_bandwidth: Some(2900.0 * GB),
    },
    GpuEntry {
        name: "h100-pcie",
        aliases: &[],
        // Its NVLink bridge joins pairs only, so larger groups talk over PCIe.
        source: "NVIDIA H100 datasheet (nvidia.com/en-us/data-center/h100), PCIe: 756 TFLOP/s bf16, 1,513 fp8, 2.0 TB/s, PCIe 5.0",
        spec: GpuSpec {
            peak_flops: 756.0 * T,
            fp8_flops: Some(1513.0 * T),
            bandwidth: 2.0 * T,
            memory_gb: 80.0,
            nvlink: None,
            pcie: PCIE5,
        },
        kernels: Kernels::Hopper,
        copy_bandwidth: None,
    },
    GpuEntry {
        name: "h200",
        aliases: &["h200-sxm"],
        source: "NVIDIA H200 datasheet (nvidia.com/en-us/data-center/h200), SXM: 989 TFLOP/s bf16, 1,979 fp8, 4.8 TB/s, 141 GB, NVLink 900 GB/s; copy 4.01 TB/s measured on an Azure ND H200 v5: Azure/AI-benchmarking-guide, Azure_Results/ND_H200_v5_results.md",
        spec: GpuSpec::H200,
        kernels: Kernels::Hopper,
        copy_bandwidth: Some(4010.0 * GB),
    },
    GpuEntry {
        name: "b200",
        aliases: &[],
        source: "NVIDIA HGX B200 datasheet (nvidia.com/en-us/data-center/hgx): per GPU 2.25 PFLOP/s bf16, 4.5 fp8 (half the sparse figures), 8 TB/s, 180 GB, NVLink 5 1.8 TB/s",
        spec: GpuSpec {
            peak_flops: 2250.0 * T,
            fp8_flops: Some(4500.0 * T),
            bandwidth: 8.0 * T,
            memory_gb: 180.0,
            nvlink: Some(900.0 * GB),
            pcie: PCIE5,
        },
        kernels: Kernels::Blackwell,
        copy_bandwidth: None,
    },
    GpuEntry {
        name: "mi300x",
        aliases: &[],
        source: "AMD Instinct MI300X datasheet (amd.com/en/products/accelerators/instinct/mi300/mi300x.html): 1,307.4 TFLOP/s bf16, 2,614.9 fp8 (dense), 5.3 TB/s, 192 GB, Infinity Fabric 896 GB/s",
        spec: GpuSpec {
            peak_flops: 1307.4 * T,
            fp8_flops: Some(2614.9 * T),
            bandwidth: 5.3 * T,
            memory_gb: 192.0,
            nvlink: Some(448.0 * GB),
            pcie: PCIE5,
        },
        kernels: Kernels::Cdna3,
        copy_bandwidth: None,
    },
    GpuEntry {
        name: "rtx-4090",
        aliases: &["4090"],
        source: "NVIDIA Ada Lovelace architecture whitepaper, GeForce RTX 4090: 165.2 TFLOP/s bf16 and 330.3 fp8 with fp32 accumulate (dense), 1,008 GB/s, 24 GB, PCIe 4.0, no NVLink",
        spec: GpuSpec {
            peak_flops: 165.2 * T,
            fp8_flops: Some(330.3 * T),
            bandwidth: 1008.0 * GB,
            memory_gb: 24.0,
            nvlink: None,
            pcie: PCIE4,
        },
        kernels: Kernels::Ampere,
        copy_bandwidth: None,
    },
];

impl GpuEntry {
    /// Fraction of its datasheet bandwidth the card's published STREAM copy reaches
    /// ([`GpuEntry::copy_bandwidth`] / [`GpuSpec::bandwidth`]), where measured.
    pub fn copy_fraction(&self) -> Option<f64> {
        self.copy_bandwidth.map(|c| c / self.spec.bandwidth)
    }
}

/// The built-in card called `name` (its name or an alias, without case).
pub fn find(name: &str) -> Option<&'static GpuEntry> {
    GPUS.iter().find(|g| {
        g.name.eq_ignore_ascii_case(name) || g.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    })
}

/// Every built-in card's name, for messages.
pub fn names() -> Vec<&'static str> {
    GPUS.iter().map(|g| g.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_card_checks_and_h100_h200_keep_their_names() {
        for g in GPUS {
            g.spec.check().unwrap();
        }
        assert_eq!(find("h100").unwrap().spec, GpuSpec::H100);
        assert_eq!(find("H200").unwrap().spec, GpuSpec::H200);
        assert!(find("h20").is_none());
        // The real vLLM runs' labels (shared/fidelity/README.md, column gpu).
        for (label, name) in [
            ("H100-80GB", "h100-sxm"),
            ("A100-80GB", "a100-80gb"),
            ("L40S-48GB", "l40s"),
        ] {
            assert_eq!(find(label).unwrap().name, name);
        }
    }

    /// A measured copy reaches 75-95% of the datasheet bandwidth on every card that has
    /// one: (1.61 / 2.039, 2.90 / 3.35, 4.01 / 4.8, 0.77 / 0.864) by hand.
    #[test]
    fn measured_copy_bandwidths_are_fractions_of_the_peaks() {
        for g in GPUS {
            if let Some(f) = g.copy_fraction() {
                assert!((0.75..0.95).contains(&f), "{}: {f}", g.name);
                assert!(g.source.contains("copy"), "{}: its source", g.name);
            }
        }
        let f = |n| find(n).unwrap().copy_fraction().unwrap();
        assert!((f("a100-80gb") - 0.789_603).abs() < 1e-6);
        assert!((f("h100") - 0.865_672).abs() < 1e-6);
        assert!((f("h200") - 0.835_417).abs() < 1e-6);
        assert!((f("l40s") - 0.891_204).abs() < 1e-6);
        assert_eq!(find("l4").unwrap().copy_fraction(), None);
    }

    #[test]
    fn a_card_reads_from_toml() {
        let text = "peak_flops = 148e12\nfp8_flops = 296e12\nbandwidth = 4.0e12\nmemory_gb = 96\npcie = 64e9\nnvlink = 450e9\n";
        let g = GpuSpec::from_toml(text).unwrap();
        assert_eq!(g.memory_gb, 96.0);
        assert_eq!(g.flops_for(1.0), 296e12);
        assert_eq!(g.flops_for(2.0), 148e12);
        assert!(GpuSpec::from_toml("peak_flops = 1e12\nbandwidth = 1e12\n").is_err());
        let neg = text.replace("memory_gb = 96", "memory_gb = -1");
        assert!(GpuSpec::from_toml(&neg).unwrap_err().contains("memory_gb"));
        assert!(GpuSpec::from_toml(&format!("{text}typo = 1\n")).is_err());
    }
}
