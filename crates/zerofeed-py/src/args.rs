//! Python arguments of any size or type to the integers the core takes, or a typed error
//! naming the argument (never a bare OverflowError or TypeError from the conversion).

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyTuple};

use crate::errors::{raise, Kind};

/// One integer of any size, as i64 when it fits; `None` when it does not fit (huge).
fn integer(argument: &str, value: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    let not_int = || {
        raise(
            Kind::Layout,
            argument,
            format!(
                "{argument} takes integers, got {}",
                value
                    .repr()
                    .map_or_else(|_| "?".to_owned(), |r| r.to_string())
            ),
        )
    };
    if value.is_instance_of::<PyBool>() {
        return Err(not_int());
    }
    let index = value.call_method0("__index__").map_err(|_| not_int())?;
    let index = index.cast::<PyInt>().map_err(|_| not_int())?;
    Ok(index.extract::<i64>().ok())
}

/// A sequence of integers (or one integer) of any size; each huge one is an error.
pub fn integers(argument: &str, value: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
    let items: Vec<Bound<'_, PyAny>> = if integer(argument, value).is_ok() {
        vec![value.clone()]
    } else {
        let iter = value.try_iter().map_err(|_| {
            raise(
                Kind::Layout,
                argument,
                format!("{argument} must be an integer or a sequence of integers"),
            )
        })?;
        iter.collect::<PyResult<_>>()?
    };
    items
        .iter()
        .enumerate()
        .map(|(k, item)| {
            integer(argument, item)?.ok_or_else(|| {
                raise(
                    Kind::Layout,
                    argument,
                    format!("{argument}[{k}]={item} is too large: sizes and axes fit in 64 bits"),
                )
            })
        })
        .collect()
}

/// A shape: non-negative integers that fit the address space.
pub fn dims(argument: &str, value: &Bound<'_, PyAny>) -> PyResult<Vec<usize>> {
    integers(argument, value)?
        .into_iter()
        .enumerate()
        .map(|(k, n)| {
            usize::try_from(n).map_err(|_| {
                raise(
                    Kind::Layout,
                    argument,
                    format!("{argument}[{k}]={n} is negative: sizes are >= 0"),
                )
            })
        })
        .collect()
}

/// `*args` that may also be given as one sequence (`v.transpose(1, 0)` or `v.transpose((1, 0))`).
pub fn spread<'py>(args: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyAny>> {
    if args.len() == 1 && !args.get_item(0)?.is_instance_of::<PyInt>() {
        args.get_item(0)
    } else {
        Ok(args.clone().into_any())
    }
}
