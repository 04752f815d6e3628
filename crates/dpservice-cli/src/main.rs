//! dpservice-cli: a drop-in replacement for ironcore's Go dpservice-cli.

#![forbid(unsafe_code)]

mod cli;
mod commands;
mod error;
mod render;
mod types;

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let output = cli::manual_parse_output(&args[1..]);
    let code = match cli::parse_args(args) {
        Err(cli::Early::Print(text)) => {
            print!("{text}");
            0
        }
        Err(cli::Early::Error { error, help }) => {
            if let Some(help) = help {
                print!("{help}");
            }
            report(&error, &output)
        }
        Ok(cli) if cli.version => {
            println!("dpservice-cli version {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(cli) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match rt {
                Ok(rt) => match rt.block_on(commands::run(cli)) {
                    Ok(()) => 0,
                    Err(e) => report(&e, &output),
                },
                Err(e) => report(&error::CliError::msg(e.to_string()), &output),
            }
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn report(e: &error::CliError, output: &str) -> i32 {
    let r = e.report();
    print!("{}", render::render_error(&r, output));
    r.exit_code
}
