//! tract's CUDA runtime (cargo feature `cuda`): the tract backend's graphs, typing and output
//! checks, with each plan made by tract-cuda instead of tract's CPU optimiser. tract-cuda opens
//! every CUDA library at run time and compiles its kernels with NVRTC when a graph loads, so the
//! build needs no CUDA toolkit and a machine without CUDA fails at load, naming what is missing.

// tract-cuda registers its runtime with `inventory` under the name "cuda"; nothing else in this
// crate names it, and an unnamed crate is not linked.
extern crate tract_cuda;

use std::path::Path;

use tract_onnx::prelude::*;

use super::tract::{Plan, TractBackend};
use super::{Backend, BackendConfig, BackendProbe, KvCache, LoadStep};
use crate::model::{ModelError, ModelFolder};

/// The CUDA API tract-cuda is built against (its `cuda-12020` feature): JetPack 6's CUDA 12.2.
pub const CUDA_API: &str = "12.2";

/// tract's runtime registry name for tract-cuda.
const RUNTIME_NAME: &str = "cuda";

/// The libraries tract-cuda opens, by cudarc's short name, and what each is for.
const LIBRARIES: [(&str, &str); 5] = [
    ("cuda", "the NVIDIA driver"),
    ("cudart", "the CUDA runtime"),
    (
        "nvrtc",
        "NVRTC, which compiles tract-cuda's kernels when a graph loads",
    ),
    ("cublas", "cuBLAS, for matrix products"),
    ("cudnn", "cuDNN, for convolutions"),
];

/// One CUDA library: the file name that opened, or the names tried.
#[derive(Clone, Debug, PartialEq)]
pub struct CudaLibrary {
    /// cudarc's short name: cuda, cudart, nvrtc, cublas, cudnn.
    pub name: &'static str,
    pub role: &'static str,
    /// The file name the dynamic loader opened.
    pub opened: Option<String>,
    /// The file names tried, in cudarc's order (the same list tract-cuda tries).
    pub tried: Vec<String>,
}

impl CudaLibrary {
    /// `libnvrtc.so` and its versioned names, the ones that matter on Linux.
    fn shown_names(&self) -> String {
        let stem = format!("lib{}.so", self.name);
        let mut names: Vec<&str> = self
            .tried
            .iter()
            .map(String::as_str)
            .filter(|n| n.starts_with(&stem))
            .collect();
        names.dedup();
        if names.is_empty() {
            names = self.tried.iter().map(String::as_str).collect();
        }
        names.join(", ")
    }

    fn soname(&self) -> String {
        self.opened
            .clone()
            .unwrap_or_else(|| format!("lib{}.so", self.name))
    }
}

/// Tries to open each library tract-cuda needs, with the names cudarc (which tract-cuda loads
/// them through) would try.
pub fn find_libraries() -> Vec<CudaLibrary> {
    LIBRARIES
        .iter()
        .map(|&(name, role)| {
            let tried = cudarc::get_lib_name_candidates(name);
            // SAFETY: opening a shared library runs its initialisers; these are the NVIDIA
            // libraries tract-cuda itself opens by the same names.
            let opened = tried
                .iter()
                .find(|file| unsafe { libloading::Library::new(file.as_str()) }.is_ok())
                .cloned();
            CudaLibrary {
                name,
                role,
                opened,
                tried,
            }
        })
        .collect()
}

/// What to install when a CUDA library is missing.
pub fn install_hint() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "flash JetPack 6 (CUDA 12.2, cuDNN 8/9; README \"Boards and flashing\"); its libraries live in /usr/local/cuda/lib64 and /usr/lib/aarch64-linux-gnu — run `sudo ldconfig` or add those folders to LD_LIBRARY_PATH"
    } else {
        "install the NVIDIA driver and CUDA 12.2 or newer with cuBLAS, NVRTC and cuDNN (or the nvidia-*-cu12 pip wheels), then run `sudo ldconfig` or add their folders to LD_LIBRARY_PATH"
    }
}

/// The first missing library, and a sentence naming every missing one.
fn missing(libraries: &[CudaLibrary]) -> Option<(String, String)> {
    let absent: Vec<&CudaLibrary> = libraries.iter().filter(|l| l.opened.is_none()).collect();
    let first = absent.first()?;
    let listed: Vec<String> = absent
        .iter()
        .map(|l| format!("lib{} ({}; tried {})", l.name, l.role, l.shown_names()))
        .collect();
    Some((
        first.soname(),
        format!(
            "tract-cuda cannot start: {} of the CUDA libraries it opens at run time cannot be loaded here: {}",
            absent.len(),
            listed.join("; ")
        ),
    ))
}

fn error_chain(e: &TractError) -> String {
    format!("{e:#}").replace('\n', " ")
}

fn not_registered() -> ModelError {
    ModelError::Backend {
        backend: "tract-cuda".into(),
        reason: "tract-cuda's runtime is not registered in this binary (tract-cuda was not linked); rebuild with `--features cuda`".into(),
    }
}

/// tract-cuda's runtime, once every library it needs opens and the driver initialises a device.
fn cuda_runtime(libraries: &[CudaLibrary]) -> Result<&'static dyn Runtime, ModelError> {
    if let Some((library, reason)) = missing(libraries) {
        return Err(ModelError::Library {
            library,
            reason: format!("{reason}. To fix: {}", install_hint()),
        });
    }
    match runtime_for_name(RUNTIME_NAME) {
        Ok(Some(runtime)) => Ok(runtime),
        Ok(None) => Err(not_registered()),
        Err(e) => Err(ModelError::Library {
            library: libraries[0].soname(),
            reason: format!(
                "the CUDA libraries load but tract-cuda cannot use the GPU: {}. Check `nvidia-smi` (on a Jetson, `tegrastats`), that /dev/nvidia* exist in this container, and that the driver supports CUDA {CUDA_API}",
                error_chain(&e)
            ),
        }),
    }
}

/// Plans a typed graph on tract-cuda: decluttered as the CPU path would, then tract-cuda's
/// transform, optimisation and device memory plan. Its plan is the same type the CPU path makes,
/// so the tract backend runs it unchanged: inputs and outputs stay host tensors.
fn cuda_plan(typed: TypedModel, file: &Path) -> Result<Plan, ModelError> {
    let failed = |what: &str, e: &TractError| ModelError::Backend {
        backend: "tract-cuda".into(),
        reason: format!("{}: {what}: {}", file.display(), error_chain(e)),
    };
    let runtime = match runtime_for_name(RUNTIME_NAME) {
        Ok(Some(runtime)) => runtime,
        Ok(None) => return Err(not_registered()),
        Err(e) => return Err(failed("tract-cuda cannot start", &e)),
    };
    let decluttered = typed.into_decluttered().map_err(|e| ModelError::Graph {
        file: file.to_path_buf(),
        reason: format!("tract cannot simplify it: {}", error_chain(&e)),
    })?;
    let runnable = runtime
        .prepare(decluttered)
        .map_err(|e| failed("tract-cuda cannot plan it", &e))?;
    runnable.typed_plan().cloned().ok_or_else(|| ModelError::Backend {
        backend: "tract-cuda".into(),
        reason: format!(
            "{}: tract-cuda returned a plan that is not a tract SimplePlan ({runnable:?}); this tract-cuda version is not supported",
            file.display()
        ),
    })
}

/// The tract backend with its plans on the GPU.
pub struct TractCudaBackend {
    tract: TractBackend,
    libraries: Vec<CudaLibrary>,
}

impl TractCudaBackend {
    /// Fails before reading any graph when a CUDA library is missing or no GPU initialises.
    pub fn load(
        folder: &ModelFolder,
        config: &BackendConfig,
    ) -> Result<TractCudaBackend, ModelError> {
        let libraries = find_libraries();
        cuda_runtime(&libraries)?;
        let tract = TractBackend::load_with(folder, config, cuda_plan)?;
        Ok(TractCudaBackend { tract, libraries })
    }
}

impl Backend for TractCudaBackend {
    fn describe(&self) -> String {
        let runtime = self
            .libraries
            .iter()
            .find(|l| l.name == "cudart")
            .map(CudaLibrary::soname)
            .unwrap_or_default();
        format!("tract 0.23 on CUDA (tract-cuda, CUDA {CUDA_API} API, {runtime})")
    }

    fn load_steps(&self) -> &[LoadStep] {
        self.tract.load_steps()
    }

    fn vision(&mut self, pixels: &[f32], n: usize) -> Result<Vec<f32>, ModelError> {
        self.tract.vision(pixels, n)
    }

    fn embed(&mut self, ids: &[u32]) -> Result<Vec<f32>, ModelError> {
        self.tract.embed(ids)
    }

    fn new_cache(&self) -> Result<KvCache, ModelError> {
        self.tract.new_cache()
    }

    fn decode(
        &mut self,
        cache: &mut KvCache,
        embeds: &[f32],
        len: usize,
    ) -> Result<Vec<f32>, ModelError> {
        self.tract.decode(cache, embeds, len)
    }
}

/// Whether tract-cuda can run here: every library opens and the driver initialises a GPU.
pub fn probe() -> BackendProbe {
    let libraries = find_libraries();
    let opened: Vec<String> = libraries.iter().filter_map(|l| l.opened.clone()).collect();
    let base = BackendProbe {
        backend: "tract-cuda",
        compiled: true,
        usable: false,
        version: Some(format!("tract-cuda 0.23, CUDA {CUDA_API} API")),
        library: None,
        providers: vec!["cuda".into()],
        detail: String::new(),
        fix: String::new(),
    };
    match cuda_runtime(&libraries) {
        Ok(_) => BackendProbe {
            usable: true,
            library: libraries.get(1).and_then(|l| l.opened.clone()),
            detail: format!("CUDA libraries: {}", opened.join(", ")),
            ..base
        },
        Err(ModelError::Library { library, reason }) => BackendProbe {
            library: Some(library),
            detail: reason,
            fix: if libraries.iter().any(|l| l.opened.is_none()) {
                install_hint().into()
            } else {
                "make a GPU visible to this process: check `nvidia-smi`, the /dev/nvidia* nodes (containers: run with the NVIDIA runtime) and the driver's CUDA version".into()
            },
            ..base
        },
        Err(e) => BackendProbe {
            detail: e.to_string(),
            fix: "rebuild with `cargo build --release --features cuda`".into(),
            ..base
        },
    }
}
