//! The `--json` event stream of `flash` and `restore`: one JSON object a line, each a
//! [`Line`] — the progress events as they happen, then `{"event":"result",…}` (several
//! devices: `{"event":"summary",…}`). These types are the stream's definition: docs/json.md
//! describes them and `modflash schema` prints the JSON Schema generated from them.

use modflash::plan::{Action, Flashed, Plan};
use modflash::progress::{Event, Evidence, Level, Operation};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

/// One line of the stream; `event` says which.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Line {
    /// Step `step` of `steps` starts.
    StepStarted {
        /// Step number, from 1.
        step: usize,
        /// Steps in the plan.
        steps: usize,
        /// What the step does, in words.
        module: String,
        /// Bytes the step sends.
        bytes: u64,
    },
    /// An operation starts.
    Started {
        /// Which operation.
        operation: OperationName,
        /// What it acts on, in words.
        what: String,
        /// Bytes it moves, when known.
        bytes: Option<u64>,
    },
    /// Bytes of the running operation done so far.
    Progress {
        /// Which operation.
        operation: OperationName,
        /// Bytes done.
        bytes_done: u64,
        /// Bytes in all (0 when unknown).
        bytes_total: u64,
    },
    /// The operation succeeded.
    Finished {
        /// Which operation.
        operation: OperationName,
    },
    /// The operation failed (the error follows on standard error).
    Failed {
        /// Which operation.
        operation: OperationName,
        /// Why, in words.
        reason: String,
    },
    /// The step's module is proven installed.
    StepVerified {
        /// Step number.
        step: usize,
        /// `read_back` or `sha256`.
        evidence: EvidenceName,
    },
    /// The device accepted the step's module; it is proven after the restart, or not at all.
    StepAccepted {
        /// Step number.
        step: usize,
        /// `device_accepted`.
        evidence: EvidenceName,
    },
    /// The step's module was written and nothing checked it.
    StepWritten {
        /// Step number.
        step: usize,
        /// `none`.
        evidence: EvidenceName,
    },
    /// A message for the user.
    Note {
        /// How much it matters.
        level: LevelName,
        /// The message.
        text: String,
    },
    /// The last line of a run on one device: the plan and what came of it.
    Result(Box<FlashResult>),
    /// The last line of a run on several devices (their events carry a `device` field).
    Summary {
        /// Each device, in the order named.
        devices: Vec<DeviceSummary>,
    },
}

/// What came of one device of several.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct DeviceSummary {
    /// The device reference.
    pub device: String,
    /// The device reference and platform, in words.
    pub label: String,
    /// Its Device OS and application before, in words.
    pub before: String,
    /// The same afterwards.
    pub after: String,
    /// `verified`, `written`, `nothing_to_do`, `no_plan`, `not_verified`, `not_as_planned`
    /// or `failed`.
    pub result: String,
    /// What went wrong, with what to do.
    pub problem: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Seconds the device took.
    pub seconds: f64,
}

/// An operation's stable name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationName {
    /// Switching the device into the mode a transport needs.
    ModeChange,
    /// Erasing flash pages.
    Erase,
    /// Sending data to be written.
    Write,
    /// Checking what was written.
    Verify,
    /// Reading memory or the installed modules.
    Read,
    /// Resetting the device into its firmware.
    Reset,
}

impl From<Operation> for OperationName {
    fn from(operation: Operation) -> Self {
        match operation {
            Operation::ModeChange => Self::ModeChange,
            Operation::Erase => Self::Erase,
            Operation::Write => Self::Write,
            Operation::Verify => Self::Verify,
            Operation::Read => Self::Read,
            Operation::Reset => Self::Reset,
        }
    }
}

/// What proves a step's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub enum EvidenceName {
    /// Every written byte was read back and compared.
    #[serde(rename = "read_back")]
    ReadBack,
    /// The device reports the SHA-256 of the file written.
    #[serde(rename = "sha256")]
    Hash,
    /// The device validated and accepted the module (not proof).
    #[serde(rename = "device_accepted")]
    DeviceAccepted,
    /// Only the header and the suffix were read back, and the device reported no passed CRC
    /// check of the module (not proof).
    #[serde(rename = "header_and_suffix")]
    HeaderAndSuffix,
    /// Header and suffix read back and matching the file, and the device's own CRC-32 check
    /// of the bytes written passed (reported by its firmware after the restart).
    #[serde(rename = "header_suffix_and_device_crc")]
    DeviceCrc,
    /// Nothing was checked.
    #[serde(rename = "none")]
    None,
}

impl From<Evidence> for EvidenceName {
    fn from(evidence: Evidence) -> Self {
        match evidence {
            Evidence::ReadBack => Self::ReadBack,
            Evidence::Hash => Self::Hash,
            Evidence::DeviceAccepted => Self::DeviceAccepted,
            Evidence::HeaderAndSuffix => Self::HeaderAndSuffix,
            Evidence::DeviceCrc => Self::DeviceCrc,
            Evidence::None => Self::None,
        }
    }
}

/// How much a note matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LevelName {
    /// Worth knowing.
    Info,
    /// Something to look at.
    Warning,
}

impl From<&Event> for Line {
    fn from(e: &Event) -> Self {
        match e {
            Event::StepStarted {
                step,
                steps,
                label,
                bytes,
            } => Self::StepStarted {
                step: *step,
                steps: *steps,
                module: label.clone(),
                bytes: *bytes,
            },
            Event::Started {
                operation,
                what,
                total,
            } => Self::Started {
                operation: (*operation).into(),
                what: what.clone(),
                bytes: *total,
            },
            Event::Progress {
                operation,
                done,
                total,
            } => Self::Progress {
                operation: (*operation).into(),
                bytes_done: *done,
                bytes_total: *total,
            },
            Event::Finished { operation } => Self::Finished {
                operation: (*operation).into(),
            },
            Event::Failed { operation, reason } => Self::Failed {
                operation: (*operation).into(),
                reason: reason.clone(),
            },
            Event::StepFinished { step, evidence } => {
                let (step, name) = (*step, (*evidence).into());
                match evidence {
                    Evidence::ReadBack | Evidence::Hash | Evidence::DeviceCrc => {
                        Self::StepVerified {
                            step,
                            evidence: name,
                        }
                    }
                    Evidence::DeviceAccepted => Self::StepAccepted {
                        step,
                        evidence: name,
                    },
                    Evidence::HeaderAndSuffix | Evidence::None => Self::StepWritten {
                        step,
                        evidence: name,
                    },
                }
            }
            Event::Note { level, text } => Self::Note {
                level: match level {
                    Level::Info => LevelName::Info,
                    Level::Warning => LevelName::Warning,
                },
                text: text.clone(),
            },
        }
    }
}

/// A plan: `plan --json`, and the start of `flash`'s result.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct PlanJson {
    /// The device reference.
    pub device: String,
    /// `dfu`, `serial` or `usb`.
    pub via: String,
    /// The writes, in order.
    pub steps: Vec<StepJson>,
    /// Requested files already installed, with why.
    pub skipped: Vec<String>,
    /// Bytes the plan sends.
    pub bytes: u64,
    /// Nothing to write, but the device is in DFU mode: the flash resets it into its firmware.
    pub leave_dfu: bool,
    /// The state the device is predicted to end in.
    #[serde(rename = "final")]
    pub prediction: PredictionJson,
}

/// One write of a plan.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct StepJson {
    /// The file, or the synthetic image's name.
    pub file: String,
    /// A synthetic image of the release table (virtual devices only).
    pub synthetic: bool,
    /// Module function (`bootloader`, `system_part`, `user_part`, …).
    pub function: String,
    /// Module index.
    pub index: u8,
    /// Module version.
    pub version: u16,
    /// The version it replaces, when one is installed.
    pub from_version: Option<u16>,
    /// Where it is written.
    pub address: u32,
    /// The DFU alternate setting (null over serial).
    pub alt: Option<u8>,
    /// Written to the staging area, for the system to copy.
    pub staged: bool,
    /// An erase, not a write.
    pub erase: bool,
    /// `dfu`, `serial` or `usb`.
    pub transport: String,
    /// Bytes sent.
    pub bytes: u64,
    /// Why the step is there.
    pub reason: String,
    /// The asset's name, for an asset module of a bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
}

/// The predicted final state.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct PredictionJson {
    /// The mode the device ends in.
    pub mode: String,
    /// Its LED (colour and pattern).
    pub led: Value,
    /// The application runs.
    pub app_runs: bool,
    /// The modules installed afterwards.
    pub modules: Vec<SlotVersion>,
}

/// A module slot and the version in it.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct SlotVersion {
    /// Module function.
    pub function: String,
    /// Module index.
    pub index: u8,
    /// Version.
    pub version: u16,
}

impl PlanJson {
    /// The JSON of `plan` on `device`.
    pub fn new(device: &str, p: &Plan) -> Self {
        let steps = p
            .steps
            .iter()
            .map(|s| StepJson {
                file: s.module.origin.to_string(),
                synthetic: s.module.origin.is_synthetic(),
                function: s.module.info.function.name().to_string(),
                index: s.module.info.index,
                version: s.module.info.version,
                from_version: s.from_version,
                address: s.address(),
                alt: match s.action {
                    Action::DfuWrite { alt, .. }
                    | Action::DfuStageBootloader { alt, .. }
                    | Action::DfuErase { alt, .. } => Some(alt),
                    Action::Serial | Action::Usb => None,
                },
                staged: matches!(s.action, Action::DfuStageBootloader { .. }),
                erase: matches!(s.action, Action::DfuErase { .. }),
                transport: s.transport().to_string(),
                bytes: s.bytes() as u64,
                reason: s.reason.clone(),
                asset: s.module.asset_name(),
            })
            .collect();
        Self {
            device: device.to_string(),
            via: p.via.name().to_string(),
            steps,
            skipped: p.skipped.clone(),
            bytes: p.bytes() as u64,
            leave_dfu: p.leave_dfu,
            prediction: PredictionJson {
                mode: p.prediction.mode.name().to_string(),
                led: serde_json::to_value(p.prediction.led).unwrap_or(Value::Null),
                app_runs: p.prediction.app_runs(),
                modules: p
                    .prediction
                    .modules
                    .iter()
                    .map(|(slot, v)| SlotVersion {
                        function: slot.function.name().to_string(),
                        index: slot.index,
                        version: *v,
                    })
                    .collect(),
            },
        }
    }
}

/// The last line of `flash --json` on one device.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct FlashResult {
    /// The plan.
    #[serde(flatten)]
    pub plan: PlanJson,
    /// Anything was written (false for a dry run, or a plan with nothing to do).
    pub executed: bool,
    /// What came of the writes; absent when nothing was executed or the run failed.
    #[serde(flatten)]
    pub outcome: Option<Outcome>,
    /// Why the run stopped before its end (the same error is on standard error); absent
    /// when it ran to the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorJson>,
}

/// An error as the CLI reports it.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ErrorJson {
    /// What failed and where (the `error:` line).
    pub message: String,
    /// What to do next (the `help:` line).
    pub help: Option<String>,
    /// The library's diagnostic code (`modflash::interrupted`, …).
    pub code: Option<String>,
}

impl FlashResult {
    /// The result of `plan` on `device`: executed when `flashed` says what came of it.
    pub fn new(device: &str, plan: &Plan, flashed: Option<&Flashed>) -> Self {
        Self {
            plan: PlanJson::new(device, plan),
            executed: flashed.is_some(),
            error: None,
            outcome: flashed.map(|f| Outcome {
                backup: f.backup.as_ref().map(|b| b.dir.display().to_string()),
                verified: f.verified(),
                mismatches: f.mismatches.clone(),
                evidence: f
                    .proofs
                    .iter()
                    .map(|p| ProofJson {
                        step: p.step,
                        function: p.slot.function.name().to_string(),
                        index: p.slot.index,
                        version: p.version,
                        evidence: p.evidence.into(),
                        asset: p.asset.clone(),
                    })
                    .collect(),
                after: serde_json::to_value(&f.after).unwrap_or(Value::Null),
            }),
        }
    }

    /// The same result for a run that stopped with `err`: it was executed, in part.
    pub fn failed(mut self, err: &crate::ui::CliError) -> Self {
        self.executed = true;
        self.error = Some(ErrorJson {
            message: err.message.clone(),
            help: err.help.clone(),
            code: err.diagnostic.clone(),
        });
        self
    }
}

/// What a run that wrote to the device ended with.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Outcome {
    /// Where the backup of what the plan replaced is (null: none taken).
    pub backup: Option<String>,
    /// The device is as predicted and every module written is proven.
    pub verified: bool,
    /// How the device differs from the prediction (empty: as predicted).
    pub mismatches: Vec<String>,
    /// What proves each module written.
    pub evidence: Vec<ProofJson>,
    /// The modules the device reports now (as in `modules --json`).
    pub after: Value,
}

/// What proves one module written.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ProofJson {
    /// The step that wrote it.
    pub step: usize,
    /// Module function.
    pub function: String,
    /// Module index.
    pub index: u8,
    /// Version.
    pub version: u16,
    /// What proves it.
    pub evidence: EvidenceName,
    /// The asset's name, for an asset module (stored by name, not in a slot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
}

/// The JSON Schema of every line of the stream.
pub fn schema() -> Value {
    serde_json::to_value(schemars::schema_for!(Line)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream's names are the library's stable names.
    #[test]
    fn names_are_the_librarys() {
        use Operation::*;
        for op in [ModeChange, Erase, Write, Verify, Read, Reset] {
            let name = serde_json::to_value(OperationName::from(op)).unwrap();
            assert_eq!(name, op.name());
        }
        use Evidence::*;
        for evidence in [ReadBack, Hash, DeviceAccepted, None] {
            let name = serde_json::to_value(EvidenceName::from(evidence)).unwrap();
            assert_eq!(name, evidence.name());
        }
    }
}
