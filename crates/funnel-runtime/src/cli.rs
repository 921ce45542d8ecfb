//! The flags every service binary takes.

use std::path::PathBuf;

/// `--config FILE` and `--print-config`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// TOML file layered over the built-in defaults (environment variables
    /// `FUNNEL_<SECTION>__<KEY>` override both).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    pub print_config: bool,
}
