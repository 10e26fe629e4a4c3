//! The `gpt` command line: one subcommand per job.

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "gpt", version, about = "Train, fine-tune and run GPT models", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
