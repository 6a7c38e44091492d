//! What the host says about itself: clocks, power mode, memory, process age. Everything here
//! reads `/proc` or `/sys` (or asks `nvpmodel`) and answers `unknown`/`None` where the file is
//! absent, so it works on any Linux box.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const UNKNOWN: &str = "unknown";

/// A devfreq device's clock (the GPU and the memory controller on Jetson).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DevfreqClock {
    pub name: String,
    pub cur_mhz: f64,
    pub max_mhz: Option<f64>,
}

/// The host's clocks and power settings at the time of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub arch: String,
    /// `/proc/device-tree/model` (Jetson), else the CPU model name.
    pub model: String,
    pub cpus: usize,
    pub kernel: String,
    /// The L4T release line from `/etc/nv_tegra_release`, or `unknown`.
    pub l4t: String,
    /// nvpmodel power mode name (Jetson), or `unknown`.
    pub power_mode: String,
    /// cpufreq governors in use (joined with `,` when CPUs differ), or `unknown`.
    pub cpu_governor: String,
    /// Current frequency of each CPU, MHz (empty where cpufreq is not exposed).
    pub cpu_cur_mhz: Vec<f64>,
    pub cpu_max_mhz: Option<f64>,
    pub devfreq: Vec<DevfreqClock>,
    pub mem_total_mb: Option<f64>,
    pub mem_available_mb: Option<f64>,
}

impl Default for HostInfo {
    fn default() -> Self {
        Self {
            arch: std::env::consts::ARCH.to_string(),
            model: UNKNOWN.to_string(),
            cpus: 0,
            kernel: UNKNOWN.to_string(),
            l4t: UNKNOWN.to_string(),
            power_mode: UNKNOWN.to_string(),
            cpu_governor: UNKNOWN.to_string(),
            cpu_cur_mhz: Vec::new(),
            cpu_max_mhz: None,
            devfreq: Vec::new(),
            mem_total_mb: None,
            mem_available_mb: None,
        }
    }
}

fn read_trim(path: impl AsRef<Path>) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string();
    (!s.is_empty()).then_some(s)
}

fn khz_file_mhz(path: impl AsRef<Path>) -> Option<f64> {
    read_trim(path)?.parse::<f64>().ok().map(|khz| khz / 1e3)
}

impl HostInfo {
    /// Reads everything readable now.
    pub fn read() -> Self {
        let mut h = HostInfo {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            ..Default::default()
        };
        h.kernel = read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(|| UNKNOWN.to_string());
        h.model = read_trim("/proc/device-tree/model")
            .or_else(|| {
                let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| UNKNOWN.to_string());
        h.l4t = read_trim("/etc/nv_tegra_release")
            .and_then(|s| {
                s.lines()
                    .next()
                    .map(|l| l.trim_start_matches('#').trim().to_string())
            })
            .unwrap_or_else(|| UNKNOWN.to_string());
        h.power_mode = power_mode().unwrap_or_else(|| UNKNOWN.to_string());

        let mut governors: Vec<String> = Vec::new();
        let mut cpu_dirs: Vec<_> = std::fs::read_dir("/sys/devices/system/cpu")
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| {
                        let n = e.file_name();
                        let n = n.to_string_lossy();
                        n.starts_with("cpu")
                            && n[3..].chars().all(|c| c.is_ascii_digit())
                            && n.len() > 3
                    })
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        cpu_dirs.sort_by_key(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n[3..].parse::<u32>().ok())
        });
        for dir in cpu_dirs {
            let f = dir.join("cpufreq");
            if let Some(g) = read_trim(f.join("scaling_governor")) {
                if !governors.contains(&g) {
                    governors.push(g);
                }
            }
            if let Some(mhz) = khz_file_mhz(f.join("scaling_cur_freq")) {
                h.cpu_cur_mhz.push(mhz);
            }
            if let Some(max) = khz_file_mhz(f.join("cpuinfo_max_freq")) {
                h.cpu_max_mhz = Some(h.cpu_max_mhz.map_or(max, |m: f64| m.max(max)));
            }
        }
        if !governors.is_empty() {
            h.cpu_governor = governors.join(",");
        }

        if let Ok(rd) = std::fs::read_dir("/sys/class/devfreq") {
            let mut clocks: Vec<DevfreqClock> = rd
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let p = e.path();
                    let cur = read_trim(p.join("cur_freq"))?.parse::<f64>().ok()? / 1e6;
                    let max = read_trim(p.join("max_freq"))
                        .and_then(|s| s.parse::<f64>().ok())
                        .map(|v| v / 1e6);
                    Some(DevfreqClock {
                        name: e.file_name().to_string_lossy().into_owned(),
                        cur_mhz: cur,
                        max_mhz: max,
                    })
                })
                .collect();
            clocks.sort_by(|a, b| a.name.cmp(&b.name));
            h.devfreq = clocks;
        }

        if let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") {
            h.mem_total_mb = meminfo_kb(&meminfo, "MemTotal:").map(|kb| kb / 1024.0);
            h.mem_available_mb = meminfo_kb(&meminfo, "MemAvailable:").map(|kb| kb / 1024.0);
        }
        h
    }
}

/// A GPU this machine shows in `/proc` or `/sys`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    pub name: String,
    /// `nvidia` (a discrete NVIDIA GPU with its kernel driver), `jetson` (the integrated GPU of
    /// a Jetson), or `drm` (any other display/compute device the kernel lists).
    pub kind: String,
    /// Where it was found, and its clock where readable.
    pub detail: String,
}

/// GPUs under the given `/proc` and `/sys` roots: NVIDIA's driver's list
/// (`driver/nvidia/gpus/*/information`), a Jetson's integrated GPU (its devfreq node, named
/// `*.gpu` or `*.ga10b`/`*.gv11b`), and DRM cards of other vendors.
pub fn gpus_at(proc_: &Path, sys: &Path) -> Vec<GpuInfo> {
    let mut gpus = Vec::new();
    let sorted = |dir: &Path| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    for dir in sorted(&proc_.join("driver/nvidia/gpus")) {
        let info = std::fs::read_to_string(dir.join("information")).unwrap_or_default();
        let model = info
            .lines()
            .find_map(|l| l.strip_prefix("Model:"))
            .map(|m| m.trim().to_string())
            .unwrap_or_else(|| UNKNOWN.to_string());
        gpus.push(GpuInfo {
            name: model,
            kind: "nvidia".to_string(),
            detail: format!(
                "PCI {}",
                dir.file_name().unwrap_or_default().to_string_lossy()
            ),
        });
    }
    for dir in sorted(&sys.join("class/devfreq")) {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let is_igpu = [".gpu", ".ga10b", ".gv11b", ".gp10b"]
            .iter()
            .any(|suffix| name.ends_with(suffix));
        if !is_igpu {
            continue;
        }
        let mhz = |f: &str| {
            read_trim(dir.join(f))
                .and_then(|v| v.parse::<f64>().ok())
                .map(|hz| format!("{:.0}", hz / 1e6))
                .unwrap_or_else(|| "?".to_string())
        };
        gpus.push(GpuInfo {
            name: format!("Jetson integrated GPU ({name})"),
            kind: "jetson".to_string(),
            detail: format!(
                "devfreq {name}: {} MHz of {} MHz",
                mhz("cur_freq"),
                mhz("max_freq")
            ),
        });
    }
    if gpus.iter().any(|g| g.kind == "nvidia") {
        return gpus;
    }
    for dir in sorted(&sys.join("class/drm")) {
        let card = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !card.starts_with("card") || card.contains('-') {
            continue;
        }
        let Some(vendor) = read_trim(dir.join("device/vendor")) else {
            continue;
        };
        let vendor_name = match vendor.as_str() {
            "0x10de" => "NVIDIA",
            "0x8086" => "Intel",
            "0x1002" => "AMD",
            other => other,
        };
        gpus.push(GpuInfo {
            name: format!(
                "{vendor_name} {}",
                read_trim(dir.join("device/device")).unwrap_or_default()
            ),
            kind: "drm".to_string(),
            detail: format!("/dev/dri/{card}"),
        });
    }
    gpus
}

/// [`gpus_at`] on this machine.
pub fn gpus() -> Vec<GpuInfo> {
    gpus_at(Path::new("/proc"), Path::new("/sys"))
}

/// A `Key:   123 kB` line of `/proc/meminfo` or `/proc/self/status`, in kB.
pub fn meminfo_kb(text: &str, key: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The nvpmodel power mode: `nvpmodel -q` where it runs, else `/var/lib/nvpmodel/status`
/// (`pmode:0002`) mapped to a name through `/etc/nvpmodel.conf`. `None` off Jetson.
pub fn power_mode() -> Option<String> {
    if let Ok(out) = std::process::Command::new("nvpmodel")
        .arg("-q")
        .stderr(std::process::Stdio::null())
        .output()
    {
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(name) = text.lines().find_map(|l| l.strip_prefix("NV Power Mode:")) {
                return Some(name.trim().to_string());
            }
        }
    }
    let status = read_trim("/var/lib/nvpmodel/status")?;
    let id: u32 = status.strip_prefix("pmode:")?.trim().parse().ok()?;
    let conf = std::fs::read_to_string("/etc/nvpmodel.conf").unwrap_or_default();
    Some(nvpmodel_name(&conf, id).unwrap_or_else(|| format!("mode {id}")))
}

/// The name of power mode `id` in an nvpmodel.conf (`< POWER_MODEL ID=2 NAME=15W >`).
pub fn nvpmodel_name(conf: &str, id: u32) -> Option<String> {
    conf.lines().find_map(|l| {
        let l = l.trim();
        if !l.starts_with("< POWER_MODEL") {
            return None;
        }
        let field = |k: &str| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(|v| v.trim_end_matches('>').to_string())
        };
        (field("ID=")?.parse::<u32>().ok()? == id).then(|| field("NAME="))?
    })
}

/// Peak resident set size of this process (`VmHWM`), MiB.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    meminfo_kb(&status, "VmHWM:").map(|kb| kb / 1024.0)
}

/// Time since this process started, from `/proc/self/stat` (field 22, in 1/100 s since boot:
/// USER_HZ is 100 on Linux) and `/proc/uptime`. Resolution 10 ms.
pub fn process_age() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: count fields after its ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let start_ticks: f64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let age = uptime - start_ticks / 100.0;
    Some(Duration::from_secs_f64(age.max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_are_found_under_proc_and_sys() {
        let root = std::env::temp_dir().join(format!("sbe-gpus-{}", std::process::id()));
        let (proc_, sys) = (root.join("proc"), root.join("sys"));
        let nv = proc_.join("driver/nvidia/gpus/0000:01:00.0");
        std::fs::create_dir_all(&nv).unwrap();
        std::fs::write(
            nv.join("information"),
            "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ: 1\n",
        )
        .unwrap();
        let igpu = sys.join("class/devfreq/17000000.gpu");
        std::fs::create_dir_all(&igpu).unwrap();
        std::fs::write(igpu.join("cur_freq"), "306000000\n").unwrap();
        std::fs::write(igpu.join("max_freq"), "918000000\n").unwrap();
        std::fs::create_dir_all(sys.join("class/devfreq/3d00000.emc")).unwrap();
        let got = gpus_at(&proc_, &sys);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(got[0].kind, "nvidia");
        assert_eq!(got[1].kind, "jetson");
        assert_eq!(got[1].detail, "devfreq 17000000.gpu: 306 MHz of 918 MHz");
        assert!(gpus_at(Path::new("/nonexistent"), Path::new("/nonexistent")).is_empty());
    }

    #[test]
    fn nvpmodel_conf_names_modes() {
        let conf = "< POWER_MODEL ID=0 NAME=MAXN >\nCPU_ONLINE CORE_0 1\n< POWER_MODEL ID=1 NAME=10W >\n< PM_CONFIG DEFAULT=2 >\n< POWER_MODEL ID=2 NAME=15W >\n";
        assert_eq!(nvpmodel_name(conf, 0).as_deref(), Some("MAXN"));
        assert_eq!(nvpmodel_name(conf, 2).as_deref(), Some("15W"));
        assert_eq!(nvpmodel_name(conf, 7), None);
    }

    #[test]
    fn meminfo_lines_parse() {
        assert_eq!(
            meminfo_kb("VmPeak:\t 100 kB\nVmHWM:\t  2048 kB\n", "VmHWM:"),
            Some(2048.0)
        );
    }

    #[test]
    fn this_process_has_an_age_and_a_peak_rss_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(process_age().is_some());
            assert!(peak_rss_mb().unwrap_or(0.0) > 0.0);
        }
    }
}
