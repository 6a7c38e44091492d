//! `spatialbot-edge arm-sim`.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _json: bool) -> anyhow::Result<u8> {
    Err(spatialbot_edge::exit::ExitError::runtime("`arm-sim` is not built yet").into())
}
