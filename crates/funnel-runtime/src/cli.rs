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

impl ConfigArgs {
    /// What every service's `main` does first: loads the configuration
    /// (defaults, then `--config`, then `FUNNEL_*` variables). A bad key or
    /// value prints the error, prefixed with `service`, and exits with
    /// [`crate::EXIT_BAD_CONFIG`] before anything is bound; `--print-config`
    /// prints the effective configuration with secrets masked and exits 0.
    pub fn load_or_exit<T>(&self, service: &str) -> T
    where
        T: serde::de::DeserializeOwned + serde::Serialize + Default + crate::config::Validate,
    {
        use std::io::Write as _;
        let config: T = match crate::load_config(self.config.as_deref(), std::env::vars()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{service}: {e}");
                std::process::exit(crate::EXIT_BAD_CONFIG);
            }
        };
        if self.print_config {
            print!("{}", crate::config::render_masked(&config));
            let _ = std::io::stdout().flush();
            std::process::exit(0);
        }
        config
    }
}
