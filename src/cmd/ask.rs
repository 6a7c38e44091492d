//! `spatialbot-edge ask`.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _json: bool) -> anyhow::Result<u8> {
    Err(spatialbot_edge::exit::ExitError::runtime("`ask` is not built yet").into())
}
