//! `modflash inspect FILE...`: the verdict on each file (a module, an application bundle, an
//! application with its asset files), in words or JSON.

use anstream::println;
use std::path::{Path, PathBuf};

use modflash::bundle::{self, is_bundle_path, AssetFile, Bundle, BundleError};
use modflash_module::{chain, Module, ModuleFlags};
use serde_json::{json, Value};

use crate::ui::{CmdResult, Style, EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE};
use crate::view::assets;
use crate::view::module_json::module_json;
use crate::view::module_text::{module_text, verdict_line};

/// Inspects every file; exit 0 when all are valid modules, 1 when any is damaged or not a
/// module, 2 when a file cannot be read (or is no regular file, or is larger than any module).
///
/// A `.zip` file is an application bundle, judged whole ([`Bundle::check`]). When an
/// application among the files requires assets, the files that are not modules are taken as
/// asset files (named by their file names), asset modules as the assets they carry, and the
/// application's verdict says whether they satisfy it.
pub fn run(files: &[PathBuf], json_output: bool) -> CmdResult {
    let style = Style::stdout();
    let mut exit = EXIT_OK;
    let mut reports = Vec::new();
    let mut loaded = Vec::new();
    for path in files {
        let name = path.display().to_string();
        let read = if is_bundle_path(path) {
            Bundle::read(path).map(|b| (b, std::fs::metadata(path).map_or(0, |m| m.len())))
        } else {
            match modflash::files::read_module_file(path) {
                Ok(bytes) => {
                    loaded.push((path, bytes));
                    continue;
                }
                Err(e) => Err(e.into()),
            }
        };
        match read {
            Ok((bundle, size)) => {
                if !bundle.check().is_valid() && exit == EXIT_OK {
                    exit = EXIT_CHECK_FAILED;
                }
                if json_output {
                    reports.push(assets::bundle_json(&name, size as usize, &bundle));
                } else {
                    print!(
                        "{}",
                        assets::bundle_text(&style, &name, size as usize, &bundle)
                    );
                }
            }
            Err(e) => {
                let unreadable = matches!(e, BundleError::File(_));
                exit = if unreadable {
                    EXIT_USAGE
                } else {
                    exit.max(EXIT_CHECK_FAILED)
                };
                if json_output {
                    reports.push(
                        json!({ "file": name, "size": null, "error": e.to_string(), "module": null }),
                    );
                } else {
                    crate::ui::print_error(&modflash::Error::from(e).into());
                }
            }
        }
    }
    let given = bundle::assets_among(loaded.iter().map(|(p, b)| (p.as_path(), b.as_slice())));
    for (path, bytes) in &loaded {
        let name = path.display().to_string();
        if let Some(asset) = given.as_ref().and_then(|g| raw_asset(g, path, bytes)) {
            let sha = hex::encode(asset.sha256);
            if json_output {
                reports.push(
                    json!({ "file": name, "size": bytes.len(), "error": null, "module": null,
                    "asset": { "name": asset.name, "sha256": sha } }),
                );
            } else {
                println!(
                    "{} ({} bytes): asset file `{}`, sha256 {sha}\n",
                    style.bold(&name),
                    bytes.len(),
                    asset.name
                );
            }
            continue;
        }
        let modules: Vec<Result<Module<'_>, String>> =
            chain(bytes).map(|m| m.map_err(|e| e.to_string())).collect();
        let valid = modules
            .iter()
            .all(|m| m.as_ref().is_ok_and(Module::is_valid));
        let check = given.as_ref().and_then(|g| {
            let first = modules.first()?.as_ref().ok()?;
            first.asset_dependencies().next()?;
            Some(bundle::check(bytes, g))
        });
        if (!valid || check.as_ref().is_some_and(|c| !c.is_valid())) && exit == EXIT_OK {
            exit = EXIT_CHECK_FAILED;
        }
        if json_output {
            let mut report = file_json(&name, bytes.len(), &modules);
            if let Some(c) = &check {
                report["assets"] = assets::check_json(c);
            }
            reports.push(report);
        } else {
            let mut text = file_text(&style, &name, bytes.len(), &modules);
            if let Some(c) = &check {
                text.pop();
                text.push_str(&assets::check_text(&style, c));
                text.push('\n');
            }
            print!("{text}");
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

/// The asset file `path` is, when it is one of the `given` assets and no module.
fn raw_asset<'a>(given: &'a [AssetFile], path: &Path, bytes: &[u8]) -> Option<&'a AssetFile> {
    if Module::parse(bytes).is_ok() {
        return None;
    }
    given
        .iter()
        .find(|a| a.name == bundle::file_name(path) && a.bytes == bytes)
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
