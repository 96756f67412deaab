//! DLPack capsules: wrapping our exports, unwrapping producers' tensors.
//!
//! A capsule named `"dltensor_versioned"` / `"dltensor"` owns its managed tensor until a
//! consumer renames it to `"used_..."`; the capsule destructor deletes only unconsumed ones.

use std::ffi::{c_char, c_void, CStr};
use std::ptr::NonNull;

use pyo3::ffi;
use pyo3::prelude::*;

use zerofeed_core::dlpack::{DLManagedTensor, DLManagedTensorVersioned, Imported, ManagedTensor};

use crate::errors::{dlpack_error, raise, Kind};

const VERSIONED: &CStr = c"dltensor_versioned";
const LEGACY: &CStr = c"dltensor";
const USED_VERSIONED: &CStr = c"used_dltensor_versioned";
const USED_LEGACY: &CStr = c"used_dltensor";

unsafe extern "C" fn destroy_versioned(capsule: *mut ffi::PyObject) {
    // SAFETY: called by CPython with the capsule being destroyed, holding the GIL. The
    // pending exception (if any) is saved and restored around the calls, as capsule
    // destructors must not clobber it.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, VERSIONED.as_ptr()) == 1 {
            let (mut ty, mut value, mut tb) = (
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            ffi::PyErr_Fetch(&mut ty, &mut value, &mut tb);
            let managed = ffi::PyCapsule_GetPointer(capsule, VERSIONED.as_ptr())
                .cast::<DLManagedTensorVersioned>();
            if let Some(deleter) = managed.as_ref().and_then(|m| m.deleter) {
                deleter(managed);
            }
            ffi::PyErr_Restore(ty, value, tb);
        }
    }
}

unsafe extern "C" fn destroy_legacy(capsule: *mut ffi::PyObject) {
    // SAFETY: as in `destroy_versioned`, for the legacy name and struct.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, LEGACY.as_ptr()) == 1 {
            let (mut ty, mut value, mut tb) = (
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            ffi::PyErr_Fetch(&mut ty, &mut value, &mut tb);
            let managed =
                ffi::PyCapsule_GetPointer(capsule, LEGACY.as_ptr()).cast::<DLManagedTensor>();
            if let Some(deleter) = managed.as_ref().and_then(|m| m.deleter) {
                deleter(managed);
            }
            ffi::PyErr_Restore(ty, value, tb);
        }
    }
}

/// Wraps a versioned export in a capsule that deletes it unless consumed.
pub fn versioned_capsule(
    py: Python<'_>,
    managed: NonNull<DLManagedTensorVersioned>,
) -> PyResult<Py<PyAny>> {
    // SAFETY: `managed` is a live export that nobody else owns; on success the capsule owns
    // it, on failure we delete it ourselves.
    unsafe {
        let capsule = ffi::PyCapsule_New(
            managed.as_ptr().cast::<c_void>(),
            VERSIONED.as_ptr(),
            Some(destroy_versioned),
        );
        if capsule.is_null() {
            if let Some(deleter) = (*managed.as_ptr()).deleter {
                deleter(managed.as_ptr());
            }
            return Err(PyErr::fetch(py));
        }
        Ok(Bound::from_owned_ptr(py, capsule).unbind())
    }
}

/// Wraps a legacy export in a capsule that deletes it unless consumed.
pub fn legacy_capsule(py: Python<'_>, managed: NonNull<DLManagedTensor>) -> PyResult<Py<PyAny>> {
    // SAFETY: as in `versioned_capsule`.
    unsafe {
        let capsule = ffi::PyCapsule_New(
            managed.as_ptr().cast::<c_void>(),
            LEGACY.as_ptr(),
            Some(destroy_legacy),
        );
        if capsule.is_null() {
            if let Some(deleter) = (*managed.as_ptr()).deleter {
                deleter(managed.as_ptr());
            }
            return Err(PyErr::fetch(py));
        }
        Ok(Bound::from_owned_ptr(py, capsule).unbind())
    }
}

fn take(capsule: &Bound<'_, PyAny>, name: &CStr, used: &CStr) -> PyResult<Option<*mut c_void>> {
    let raw = capsule.as_ptr();
    // SAFETY: `raw` is a live object (borrowed from `capsule`); the capsule API checks its type.
    unsafe {
        if ffi::PyCapsule_IsValid(raw, name.as_ptr()) != 1 {
            return Ok(None);
        }
        let pointer = ffi::PyCapsule_GetPointer(raw, name.as_ptr());
        if pointer.is_null() {
            return Err(PyErr::fetch(capsule.py()));
        }
        // Renaming marks the capsule consumed: its destructor will leave the tensor to us.
        if ffi::PyCapsule_SetName(raw, used.as_ptr() as *const c_char) != 0 {
            return Err(PyErr::fetch(capsule.py()));
        }
        Ok(Some(pointer))
    }
}

/// Consumes a DLPack capsule (either kind) and reads the tensor it holds.
pub fn import_capsule(capsule: &Bound<'_, PyAny>) -> PyResult<Imported> {
    let imported = if let Some(p) = take(capsule, VERSIONED, USED_VERSIONED)? {
        // SAFETY: the pointer came out of a valid, now-consumed capsule, so we are its only
        // owner; the core validates every field before use (NULL included).
        unsafe { ManagedTensor::import_versioned(p.cast()) }
    } else if let Some(p) = take(capsule, LEGACY, USED_LEGACY)? {
        // SAFETY: as above, for the legacy struct.
        unsafe { ManagedTensor::import_legacy(p.cast()) }
    } else {
        return Err(raise(
            Kind::UnsupportedSource,
            "obj",
            "expected an unconsumed DLPack capsule named 'dltensor' or 'dltensor_versioned' (a capsule can be consumed only once; call __dlpack__() again)",
        ));
    };
    imported.map_err(|e| dlpack_error("obj", e))
}
