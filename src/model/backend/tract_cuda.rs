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
    /// Why the library that opened cannot serve tract-cuda (a runtime of another CUDA major
    /// version), if it cannot.
    pub incompatible: Option<String>,
}

impl CudaLibrary {
    /// The Linux names tried, as `libnvrtc.so{,.12,.11,.10,.9,.1}`.
    fn shown_names(&self) -> String {
        let stem = format!("lib{}.so", self.name);
        let mut suffixes: Vec<&str> = Vec::new();
        for name in &self.tried {
            if let Some(suffix) = name.strip_prefix(&stem) {
                if !suffixes.contains(&suffix) {
                    suffixes.push(suffix);
                }
            }
        }
        if suffixes.is_empty() {
            return self.tried.join(", ");
        }
        format!("{stem}{{{}}}", suffixes.join(","))
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
            let (opened, incompatible) = tried
                .iter()
                .find_map(|file| {
                    let library = unsafe { libloading::Library::new(file.as_str()) }.ok()?;
                    Some((file.clone(), lacks_required_symbol(name, &library)))
                })
                .unzip();
            CudaLibrary {
                name,
                role,
                opened,
                tried,
                incompatible: incompatible.flatten(),
            }
        })
        .collect()
}

/// A symbol each library must export for tract-cuda's CUDA 12.2 bindings, where one is known to
/// be missing from other major versions: CUDA 13's runtime dropped `cudaGetDeviceProperties_v2`,
/// and cudarc panics when it looks that up (seen on a CUDA 13.0 machine, driver 580).
const REQUIRED_SYMBOLS: [(&str, &str); 1] = [("cudart", "cudaGetDeviceProperties_v2")];

/// Why `library` (cudarc's short name `name`) cannot serve tract-cuda, if a required symbol is
/// missing from it.
fn lacks_required_symbol(name: &str, library: &libloading::Library) -> Option<String> {
    let (_, symbol) = REQUIRED_SYMBOLS.iter().find(|(n, _)| *n == name)?;
    let wanted = format!("{symbol}\0");
    // SAFETY: the symbol is only looked up, never called or dereferenced.
    let found = unsafe { library.get::<*const ()>(wanted.as_bytes()) }.is_ok();
    (!found).then(|| {
        format!(
            "it has no {symbol}, which tract-cuda's CUDA {CUDA_API} API calls: a runtime of another \
             major version (CUDA 13 or later)"
        )
    })
}

/// What to install when a CUDA library is missing.
pub fn install_hint() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "flash JetPack 6 (CUDA 12.2, cuDNN 8/9; docs/jetson.md); its libraries live in /usr/local/cuda/lib64 and /usr/lib/aarch64-linux-gnu — run `sudo ldconfig` or add those folders to LD_LIBRARY_PATH"
    } else {
        "install the NVIDIA driver and CUDA 12.2 or a later 12.x with cuBLAS, NVRTC and cuDNN (or the nvidia-*-cu12 pip wheels; with CUDA 13, its NVRTC, cuBLAS and cuDNN work, but the runtime must be CUDA 12's libcudart.so.12), then run `sudo ldconfig` or add their folders to LD_LIBRARY_PATH"
    }
}

/// Why tract-cuda cannot start here: the library to blame, what is wrong, what to do.
struct Unusable {
    library: String,
    detail: String,
    fix: String,
}

impl From<Unusable> for ModelError {
    fn from(u: Unusable) -> ModelError {
        ModelError::Library {
            library: u.library,
            reason: format!("{}; to fix: {}", u.detail, u.fix),
        }
    }
}

/// Names every library that does not open, and every one that opens but cannot serve.
fn missing(libraries: &[CudaLibrary]) -> Option<Unusable> {
    let absent: Vec<&CudaLibrary> = libraries.iter().filter(|l| l.opened.is_none()).collect();
    if absent.is_empty() {
        return incompatible(libraries);
    }
    let first = absent.first()?;
    let listed: Vec<String> = absent
        .iter()
        .map(|l| format!("lib{} ({}; tried {})", l.name, l.role, l.shown_names()))
        .collect();
    Some(Unusable {
        library: first.soname(),
        detail: format!(
            "tract-cuda cannot start: {} of the {} CUDA libraries it opens at run time do not load here: {}",
            absent.len(),
            libraries.len(),
            listed.join("; ")
        ),
        fix: install_hint().into(),
    })
}

/// Names every library that opens but lacks what tract-cuda calls.
fn incompatible(libraries: &[CudaLibrary]) -> Option<Unusable> {
    let wrong: Vec<&CudaLibrary> = libraries
        .iter()
        .filter(|l| l.incompatible.is_some())
        .collect();
    let first = wrong.first()?;
    let listed: Vec<String> = wrong
        .iter()
        .map(|l| {
            format!(
                "lib{} ({}; opened {}, but {}; tried {})",
                l.name,
                l.role,
                l.soname(),
                l.incompatible.as_deref().unwrap_or_default(),
                l.shown_names()
            )
        })
        .collect();
    Some(Unusable {
        library: first.soname(),
        detail: format!(
            "tract-cuda cannot start: {} of the CUDA libraries it opens at run time cannot serve it: {}",
            wrong.len(),
            listed.join("; ")
        ),
        fix: "put the CUDA 12 runtime first on LD_LIBRARY_PATH (libcudart.so.12, from CUDA 12.2 or newer 12.x or the nvidia-cuda-runtime-cu12 wheel; a newer driver is fine), or name it libcudart.so in a folder listed there; the other CUDA libraries may stay at CUDA 13 (tract-cuda ran so on an H200 with CUDA 13.0)"
            .into(),
    })
}

/// Whether tract-cuda's runtime is linked into this binary and registered with tract (true
/// even where it cannot start: tract then reports why it is unusable).
pub fn runtime_registered() -> bool {
    !matches!(runtime_for_name(RUNTIME_NAME), Ok(None))
}

/// tract-cuda's runtime, once every library it needs opens and the driver initialises a device.
fn cuda_runtime(libraries: &[CudaLibrary]) -> Result<&'static dyn Runtime, Unusable> {
    if let Some(unusable) = missing(libraries) {
        return Err(unusable);
    }
    match runtime_for_name(RUNTIME_NAME) {
        Ok(Some(runtime)) => Ok(runtime),
        Ok(None) => Err(Unusable {
            library: "tract-cuda".into(),
            detail: "tract-cuda's runtime is not registered in this binary (the crate was not linked)".into(),
            fix: "rebuild with `--features cuda`".into(),
        }),
        Err(e) => Err(Unusable {
            library: "libcuda.so.1".into(),
            detail: format!(
                "the CUDA libraries load but tract-cuda cannot use a GPU: {}",
                super::tract::chain(&e)
            ),
            fix: format!("check `nvidia-smi` (on a Jetson, `tegrastats`), that /dev/nvidia* exist in this container (run it with the NVIDIA container runtime), and that the driver supports CUDA {CUDA_API}"),
        }),
    }
}

/// Plans a typed graph on tract-cuda: decluttered as the CPU path would, then tract-cuda's
/// transform, optimisation and device memory plan. Its plan is the same type the CPU path makes,
/// so the tract backend runs it unchanged: inputs and outputs stay host tensors.
fn cuda_plan(typed: TypedModel, file: &Path) -> Result<Plan, ModelError> {
    let failed = |what: &str, e: &TractError| ModelError::Backend {
        backend: "tract-cuda".into(),
        reason: format!("{}: {what}: {}", file.display(), super::tract::chain(e)),
    };
    // The libraries were found when the backend started loading.
    let runtime = cuda_runtime(&[])?;
    let decluttered = typed.into_decluttered().map_err(|e| ModelError::Graph {
        file: file.to_path_buf(),
        reason: format!("tract cannot simplify it: {}", super::tract::chain(&e)),
    })?;
    // tract-cuda `expect`s its CUDA context and stream into existence; a GPU that passed the
    // driver check and still fails there (out of memory, lost) is an error here, not an abort.
    let prepared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.prepare(decluttered)
    }));
    let runnable = match prepared {
        Ok(result) => result.map_err(|e| failed("tract-cuda cannot plan it", &e))?,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Err(ModelError::Backend {
                backend: "tract-cuda".into(),
                reason: format!(
                    "{}: tract-cuda stopped while setting up the GPU: {message}",
                    file.display()
                ),
            });
        }
    };
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
            library: libraries
                .iter()
                .find(|l| l.name == "cudart")
                .and_then(|l| l.opened.clone()),
            detail: format!("CUDA libraries: {}", opened.join(", ")),
            ..base
        },
        Err(unusable) => BackendProbe {
            library: Some(unusable.library),
            detail: unusable.detail,
            fix: unusable.fix,
            ..base
        },
    }
}
