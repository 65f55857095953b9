//! `modflash inspect FILE...`: the verdict on each file, in words or JSON.

use anstream::println;
use std::path::PathBuf;

use modflash_module::{chain, Module, ModuleFlags};
use serde_json::{json, Value};

use crate::ui::{CmdResult, Style, EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE};
use crate::view::module_json::module_json;
use crate::view::module_text::{module_text, verdict_line};

/// Inspects every file; exit 0 when all are valid modules, 1 when any is damaged or not a
/// module, 2 when a file cannot be read (or is no regular file, or is larger than any module).
pub fn run(files: &[PathBuf], json_output: bool) -> CmdResult {
    let style = Style::stdout();
    let mut exit = EXIT_OK;
    let mut reports = Vec::new();
    for path in files {
        let name = path.display().to_string();
        let bytes = match modflash::files::read_module_file(path) {
            Ok(b) => b,
            Err(e) => {
                exit = EXIT_USAGE;
                if json_output {
                    reports.push(
                        json!({ "file": name, "size": null, "error": e.to_string(), "module": null }),
                    );
                } else {
                    crate::ui::print_error(&modflash::Error::from(e).into());
                }
                continue;
            }
        };
        let modules: Vec<Result<Module<'_>, String>> = chain(&bytes)
            .map(|m| m.map_err(|e| e.to_string()))
            .collect();
        let valid = modules
            .iter()
            .all(|m| m.as_ref().is_ok_and(Module::is_valid));
        if !valid && exit == EXIT_OK {
            exit = EXIT_CHECK_FAILED;
        }
        if json_output {
            reports.push(file_json(&name, bytes.len(), &modules));
        } else {
            print!("{}", file_text(&style, &name, bytes.len(), &modules));
        }
    }
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(&Value::Array(reports)).unwrap_or_default()
        );
    }
    Ok(exit)
}

fn file_json(name: &str, size: usize, modules: &[Result<Module<'_>, String>]) -> Value {
    let error = match modules.first() {
        Some(Err(e)) => Some(format!("not a module: {e}")),
        _ => {
            let problems: Vec<String> = modules
                .iter()
                .filter_map(|m| m.as_ref().ok())
                .flat_map(|m| m.problems().map(|p| p.to_string()).collect::<Vec<_>>())
                .chain(
                    modules
                        .iter()
                        .skip(1)
                        .filter_map(|m| m.as_ref().err().cloned()),
                )
                .collect();
            (!problems.is_empty()).then(|| format!("damaged: {}", problems.join("; ")))
        }
    };
    let module = match modules.first() {
        Some(Ok(first)) => {
            let mut v = module_json(first);
            let combined = first.info.flags.contains(ModuleFlags::COMBINED) || modules.len() > 1;
            v["combined"] = if combined {
                Value::Array(
                    modules
                        .iter()
                        .map(|m| match m {
                            Ok(m) => module_json(m),
                            Err(e) => json!({ "error": format!("not a module: {e}") }),
                        })
                        .collect(),
                )
            } else {
                Value::Null
            };
            v
        }
        _ => Value::Null,
    };
    json!({ "file": name, "size": size, "error": error, "module": module })
}

fn file_text(
    style: &Style,
    name: &str,
    size: usize,
    modules: &[Result<Module<'_>, String>],
) -> String {
    let mut out = format!(
        "{} ({size} bytes): {}\n",
        style.bold(name),
        verdict_line(style, modules)
    );
    let many = modules.len() > 1;
    for (i, m) in modules.iter().enumerate() {
        if let Ok(m) = m {
            if many {
                out.push_str(&format!(
                    "  {} at file offset {:#x}\n",
                    style.bold(&format!("module {}", i + 1)),
                    m.file_offset
                ));
            }
            out.push_str(&module_text(style, m));
        }
    }
    out.push('\n');
    out
}
