//! `snoop completions SHELL` and `snoop man [COMMAND]`: shell completion
//! scripts and man pages generated from the same clap definitions the
//! binary parses with, so they can never disagree with the flags.

use std::io::Write;

use clap::CommandFactory;

/// Arguments of `snoop completions`.
#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `snoop man`.
#[derive(clap::Args)]
pub struct ManArgs {
    /// A subcommand's page (e.g. `record`) instead of snoop's own.
    pub command: Option<String>,
}

/// Write the completion script for `args.shell` to stdout.
pub fn completions<C: CommandFactory>(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut cmd = C::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "snoop", &mut out);
    out.flush()?;
    Ok(())
}

/// Write the man page (roff) of snoop or of one subcommand to stdout.
pub fn man<C: CommandFactory>(args: &ManArgs) -> anyhow::Result<()> {
    let root = C::command();
    let page = match &args.command {
        None => root,
        Some(name) => {
            let Some(sub) = root.find_subcommand(name).cloned() else {
                let names: Vec<&str> = root.get_subcommands().map(|c| c.get_name()).collect();
                return Err(anyhow::Error::new(UnknownCommand(format!(
                    "no subcommand {name:?} (one of: {})",
                    names.join(", ")
                ))));
            };
            // The page is named after the full command, as `man snoop-record`.
            let full = format!("snoop-{}", sub.get_name());
            sub.name(full)
        }
    };
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(page).render(&mut out)?;
    out.flush()?;
    Ok(())
}

/// `snoop man NAME` with a NAME that is no subcommand (a usage error).
#[derive(Debug)]
pub struct UnknownCommand(pub String);

impl std::fmt::Display for UnknownCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnknownCommand {}
