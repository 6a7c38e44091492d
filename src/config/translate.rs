//! The one translation of a board profile into each subsystem's settings type. Every command
//! (and `doctor`) takes its settings from here, so a profile means the same thing to all of them.

use spatialbot_link::{ACTION_LEN, DEFAULT_LAYOUT};

use super::{Board, BoardError};
use crate::camera::SpecDefaults;
use crate::link::{Limits, LinkConfig, LinkSpec};
use crate::model::backend::{BackendConfig, OrtConfig, TritonConfig};
use crate::policy::guard::GuardConfig;

impl Board {
    /// The safety governor's limits (also sent to the controller in `Hello`) — the one
    /// translation of `[safety]` every command uses: the profile's axes placed in the wire's
    /// default layout; `terminate`, unless the profile limits it, is 0..=1 with a step of 1; an
    /// axis of the layout the profile does not limit is refused (naming the file and axis);
    /// the rate limit becomes the shortest interval between actions, rounded up so the rate is
    /// never exceeded.
    pub fn governor_limits(&self) -> Result<Limits, BoardError> {
        let mut limits = Limits {
            layout: DEFAULT_LAYOUT,
            min: [0.0; ACTION_LEN],
            max: [0.0; ACTION_LEN],
            max_step: [1.0; ACTION_LEN],
            max_age_ms: self.safety.max_age_ms,
            min_interval_ms: (1000.0 / self.safety.rate_limit_hz).ceil() as u32,
        };
        for (i, axis) in DEFAULT_LAYOUT.iter().enumerate() {
            let (min, max, step) = match (self.safety.axis(axis.name()), axis) {
                (Some(a), _) => (a.min as f32, a.max as f32, a.max_step as f32),
                (None, spatialbot_link::Axis::Terminate) => (0.0, 1.0, 1.0),
                (None, spatialbot_link::Axis::Unused) => (0.0, 0.0, 1.0),
                (None, _) => {
                    return Err(self.invalid(
                        "safety.axes",
                        format!("no entry named {:?}", axis.name()),
                        "one [[safety.axes]] entry for each axis the arm takes",
                    ))
                }
            };
            limits.min[i] = min;
            limits.max[i] = max;
            limits.max_step[i] = step;
        }
        limits
            .validate()
            .map_err(|e| self.invalid("safety.axes", "limits", e.to_string()))?;
        Ok(limits)
    }

    /// The link's configuration — limits, controller watchdog, heartbeat, reply and lost-link
    /// times, the rejected-in-a-row limit — from the profile; the link module's defaults for
    /// the rest (a random session id among them).
    pub fn link_config(&self) -> Result<LinkConfig, BoardError> {
        let mut cfg = LinkConfig::new(self.governor_limits()?);
        cfg.watchdog_ms = u16::try_from(self.link.watchdog_ms).unwrap_or(u16::MAX);
        cfg.heartbeat = std::time::Duration::from_millis(u64::from(self.link.heartbeat_ms));
        cfg.reply_timeout = std::time::Duration::from_millis(u64::from(self.link.reply_timeout_ms));
        cfg.lost_link = std::time::Duration::from_millis(u64::from(self.link.lost_link_ms));
        cfg.max_rejected_in_a_row = self.link.max_rejected_in_a_row;
        Ok(cfg)
    }

    /// The parsed link SPEC (`link.spec` with `link.baud`).
    pub fn link_spec(&self) -> Result<LinkSpec, BoardError> {
        self.link
            .cli_spec()
            .parse::<LinkSpec>()
            .map_err(|e| self.invalid("link.spec", format!("{:?}", self.link.spec), e.to_string()))
    }

    /// The inference engines `[backend]` asks for, in order, each falling back to the next
    /// (see [`BackendConfig::from_order`]): `order`, `cpu_fallback`, `threads`,
    /// `tensorrt_fp16`, `engine_cache_dir` and `onnxruntime_library`.
    pub fn backend_config(&self) -> BackendConfig {
        let b = &self.backend;
        let ort = OrtConfig {
            library: b.onnxruntime_library.as_deref().map(|p| self.path(p)),
            allow_cpu_fallback: b.cpu_fallback,
            tensorrt_fp16: b.tensorrt_fp16,
            cache_dir: Some(self.engine_cache_dir()),
            providers: Vec::new(),
        };
        BackendConfig::from_order(
            &b.order,
            b.threads as usize,
            &ort,
            self.triton_config().as_ref(),
        )
    }

    /// The inference server of `[backend.triton]`, when the profile has one.
    pub fn triton_config(&self) -> Option<TritonConfig> {
        let t = self.backend.triton.as_ref()?;
        let ms = |v: u32| std::time::Duration::from_millis(u64::from(v));
        Some(TritonConfig {
            url: t.url.clone(),
            deadline: ms(t.deadline_ms),
            connect_timeout: ms(t.connect_timeout_ms),
            retry_after: ms(t.retry_after_ms),
            ca_certificate: t.ca_certificate.as_deref().map(|p| self.path(p)),
            model_prefix: t.model_prefix.clone(),
            logits_top_k: t.logits_top_k,
        })
    }

    /// What `[camera]` fills in where a camera SPEC leaves it unset: the stream modes, the
    /// RealSense serial to insist on and the largest colour/depth skew.
    pub fn camera_defaults(&self) -> SpecDefaults {
        let c = &self.camera;
        SpecDefaults {
            depth: Some(c.depth),
            color: Some(c.color),
            serial: Some(c.serial.clone()).filter(|s| !s.is_empty() && s != "any"),
            max_skew_ms: Some(f64::from(c.max_skew_ms)),
        }
    }

    /// The guard's settings (`[guard]`), when the profile has one.
    pub fn guard_config(&self) -> Option<GuardConfig> {
        let g = self.guard.as_ref()?;
        Some(GuardConfig {
            question: g.question.clone(),
            proceed_if: g.proceed_if,
            every_steps: g.every_steps,
            before_gripper_close: g.before_gripper_close,
            gripper: g.gripper.clone(),
            close_threshold: g.close_threshold,
            closed_is_below: g.closed_is_below,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_board_limits() {
        let board = Board::default_dev().unwrap();
        let l = board.governor_limits().unwrap();
        assert_eq!(l.min[0], -0.2f32);
        assert_eq!(l.max[6], 1.0);
        assert_eq!((l.min[7], l.max[7]), (0.0, 1.0));
        assert_eq!(l.max_age_ms, board.safety.max_age_ms);
    }

    fn dev_with(order: &str, triton: &str) -> Result<Board, BoardError> {
        let text = crate::config::BUILTIN_PROFILES
            .iter()
            .find(|(name, _)| *name == crate::config::DEV_PROFILE)
            .map(|(_, text)| *text)
            .unwrap()
            .replace("order = [\"tract-cpu\"]", order)
            .replace("[camera]", &format!("{triton}\n[camera]"));
        Board::from_toml_str(
            &text,
            std::path::Path::new("t.toml"),
            std::path::Path::new("b"),
        )
    }

    #[test]
    fn triton_first_with_tract_standing_in() {
        let board = dev_with(
            "order = [\"triton\", \"tract-cpu\"]",
            "[backend.triton]\nurl = \"grpc://gpu:8001\"\ndeadline_ms = 250\nca_certificate = \"ca.pem\"",
        )
        .unwrap();
        let c = board.backend_config();
        assert_eq!(c.kind, crate::model::backend::BackendKind::Triton);
        let t = c.triton.as_ref().unwrap();
        assert_eq!(t.url, "grpc://gpu:8001");
        assert_eq!(t.deadline, std::time::Duration::from_millis(250));
        assert_eq!(t.retry_after, std::time::Duration::from_millis(1000));
        assert_eq!(
            t.ca_certificate.as_deref(),
            Some(std::path::Path::new("b/ca.pem"))
        );
        let next = c.fallback.as_deref().unwrap();
        assert_eq!(next.kind, crate::model::backend::BackendKind::Tract);
        assert!(next.triton.is_none());
    }

    #[test]
    fn triton_in_the_order_needs_its_server() {
        let e = dev_with("order = [\"triton\", \"tract-cpu\"]", "").unwrap_err();
        assert!(e.to_string().contains("backend.triton"), "{e}");
        let e = dev_with(
            "order = [\"triton\", \"tract-cpu\"]",
            "[backend.triton]\nurl = \"grpc://gpu:8001\"\ndeadline_ms = 0",
        )
        .unwrap_err();
        assert!(e.to_string().contains("deadline_ms"), "{e}");
    }
}
