//! `intdistill._core`: module wiring only. Each concern lives in its own module as plain
//! functions over slices (tested with `cargo test`), plus a `#[cfg(feature = "python")]` wrapper
//! that validates inputs at the boundary and releases the GIL around the real work.

pub mod answers;
pub mod metrics;
pub mod permutation;
pub mod topk;

#[cfg(feature = "python")]
use pyo3::prelude::*;

#[cfg(feature = "python")]
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    metrics::register(m)?;
    answers::register(m)?;
    permutation::register(m)?;
    topk::register(m)?;
    Ok(())
}
