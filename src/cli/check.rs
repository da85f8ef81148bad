//! `herald check`: the loader `serve` uses, run once, with every error printed.

use std::process::ExitCode;

use super::{ConfigArgs, EXIT_CONFIG};
use crate::config::env::ProcessEnv;
use crate::config::{LoadOptions, load};
use crate::render_check::{self, Severity};

pub fn run(args: &ConfigArgs) -> ExitCode {
    let options = LoadOptions {
        config_dir: &args.config_dir,
        data_dir: &args.data_dir,
        env: &ProcessEnv,
        generation: 1,
    };
    match load(&options) {
        Ok(generation) => {
            for notice in &generation.notices {
                println!("note: {notice}");
            }
            let findings = render_check::check_examples(&generation);
            let errors = findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count();
            for finding in &findings {
                match finding.severity {
                    Severity::Error => eprintln!("error: {finding}"),
                    Severity::Warning => println!("warning: {finding}"),
                }
            }
            if errors > 0 {
                eprintln!(
                    "configuration invalid: {errors} error{} rendering the schemas' example payloads",
                    if errors == 1 { "" } else { "s" }
                );
                return ExitCode::from(EXIT_CONFIG);
            }
            println!(
                "configuration OK: {} rules, {} channels, {} template sets, {} webhook types with a schema, {} example payloads rendered",
                generation.rules.len(),
                generation.channels.len(),
                generation.templates.sets().len(),
                generation.schemas.type_count(),
                generation.schemas.examples().len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("error: {error}");
            }
            eprintln!(
                "configuration invalid: {} error{}",
                errors.0.len(),
                if errors.0.len() == 1 { "" } else { "s" }
            );
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
