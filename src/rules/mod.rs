//! The rule engine and the compiled rules it runs.

mod conditions;
pub mod decision;
pub mod engine;
pub mod fields;
mod model;
mod quiet;
mod render;

pub use decision::Decision;
pub use engine::{EngineError, evaluate};
pub use model::{
    Action, AttributeTest, Condition, FieldMap, QuietAction, QuietHours, Rule, SegmentLimit,
    SupersedeMode, TypePattern, well_known,
};
