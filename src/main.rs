//! `partway`: the all-in-one service and the command line around it (`src/commands.rs`).
use std::process::ExitCode;

use clap::Parser;

mod commands;
mod webhook_commands;

#[tokio::main]
async fn main() -> ExitCode {
    partway_core::memory::tune_allocator();
    let cli = commands::Cli::parse();
    partway_runtime::exit_with("partway", commands::run(cli).await)
}
