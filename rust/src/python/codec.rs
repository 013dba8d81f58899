//! Python face of the codec: builds `ikecp.message` objects from `codec::Message` and back,
//! and raises `ikecp.errors.ParseError` / `ValueError` / `TypeError` like the reference codec.

use std::borrow::Cow;

use pyo3::conversion::IntoPyObjectExt;
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyInt, PyString, PyTuple, PyType};
use pyo3::{intern, wrap_pyfunction};

use super::buf::Buf;
use crate::codec::{
    self, AttrValue, Body, Bytes, ConfigAttribute, Message, Payload, Proposal, TrafficSelector,
    Transform, TransformAttribute,
};

/// The Python classes the codec builds, looked up once: `ikecp` is still importing when
/// `_native` loads, so this cannot happen at module init.
struct Classes {
    message: Class,
    sa: Class,
    ke: Class,
    idi: Class,
    idr: Class,
    cert: Class,
    certreq: Class,
    auth: Class,
    nonce: Class,
    notify: Class,
    delete: Class,
    vendor_id: Class,
    tsi: Class,
    tsr: Class,
    sk: Class,
    skf: Class,
    cp: Class,
    eap: Class,
    unknown: Class,
    proposal: Class,
    transform: Class,
    transform_attribute: Class,
    traffic_selector: Class,
    config_attribute: Class,
    parse_error: Py<PyType>,
    unsupported_critical: Py<PyType>,
}

impl Classes {
    /// The class whose type object is `ty`, the most numerous objects first.
    fn of(&self, ty: *mut ffi::PyTypeObject) -> Option<&Class> {
        [
            &self.transform_attribute,
            &self.transform,
            &self.traffic_selector,
            &self.config_attribute,
            &self.proposal,
            &self.message,
            &self.sa,
            &self.ke,
            &self.idi,
            &self.idr,
            &self.cert,
            &self.certreq,
            &self.auth,
            &self.nonce,
            &self.notify,
            &self.delete,
            &self.vendor_id,
            &self.tsi,
            &self.tsr,
            &self.sk,
            &self.skf,
            &self.cp,
            &self.eap,
            &self.unknown,
        ]
        .into_iter()
        .find(|c| c.ty.as_ptr().cast() == ty)
    }
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

fn classes(py: Python<'_>) -> PyResult<&'static Classes> {
    CLASSES.get_or_try_init(py, || {
        let m = py.import("ikecp.message")?;
        let get = |name: &str| -> PyResult<Class> {
            let ty = m.getattr(name)?.cast_into::<PyType>()?;
            Ok(Class {
                fast: Fast::probe(&ty)?,
                ty: ty.unbind(),
            })
        };
        let errors = py.import("ikecp.errors")?;
        Ok(Classes {
            message: get("Message")?,
            sa: get("SA")?,
            ke: get("KE")?,
            idi: get("IDi")?,
            idr: get("IDr")?,
            cert: get("Cert")?,
            certreq: get("CertReq")?,
            auth: get("Auth")?,
            nonce: get("Nonce")?,
            notify: get("Notify")?,
            delete: get("Delete")?,
            vendor_id: get("VendorId")?,
            tsi: get("TSi")?,
            tsr: get("TSr")?,
            sk: get("SK")?,
            skf: get("SKF")?,
            cp: get("CP")?,
            eap: get("EAP")?,
            unknown: get("UnknownPayload")?,
            proposal: get("Proposal")?,
            transform: get("Transform")?,
            transform_attribute: get("TransformAttribute")?,
            traffic_selector: get("TrafficSelector")?,
            config_attribute: get("ConfigAttribute")?,
            parse_error: errors
                .getattr("ParseError")?
                .cast_into::<PyType>()?
                .unbind(),
            unsupported_critical: errors
                .getattr("UnsupportedCriticalPayloadError")?
                .cast_into::<PyType>()?
                .unbind(),
        })
    })
}

/// A core parse error as `ikecp.errors.ParseError(what, offset, payload)` (its subclass
/// `UnsupportedCriticalPayloadError` for that fault).
pub(crate) fn parse_error(py: Python<'_>, e: codec::ParseError) -> PyErr {
    match classes(py) {
        Ok(c) => PyErr::from_type(
            if e.what == codec::UNSUPPORTED_CRITICAL_PAYLOAD {
                c.unsupported_critical.bind(py).clone()
            } else {
                c.parse_error.bind(py).clone()
            },
            (e.what, e.offset, e.payload),
        ),
        Err(import_failed) => import_failed,
    }
}

// --- decoding: core types -> Python objects -------------------------------------------------

/// One `ikecp.message` class and, when its construction allows it, its fast path.
struct Class {
    ty: Py<PyType>,
    fast: Option<Fast>,
}

/// How `cls(*fields)` builds an instance of a record class, done without the Python frame of
/// its `__init__`: the class's own `tp_alloc` (what `object.__new__` calls), then each field
/// stored through the class's own member descriptor, called through its type's
/// `tp_descr_set` slot — the very calls that `ikecp.record`'s generated `__init__` makes,
/// in the same order. Only the stable ABI is used (`PyType_GetSlot` on the descriptor type
/// works for static types from 3.10) and no instance memory is touched directly, so the
/// descriptors keep doing their own checks and locking.
struct Fast {
    alloc: ffi::allocfunc,
    set: ffi::descrsetfunc,
    get: ffi::descrgetfunc,
    /// Interned field names and their member descriptors, in `__init__` parameter order.
    names: Vec<Py<PyString>>,
    descrs: Vec<Py<PyAny>>,
}

impl Fast {
    /// The fast path for `ty`, or `None` (then `ty(**fields)` is called) unless all of these
    /// hold: `__new__` is `object.__new__`; `__init__` is the one `ikecp.record` generated
    /// for exactly these fields (it only sets each slot through its descriptor, no other
    /// check); every field is a plain member descriptor of the class.
    fn probe(ty: &Bound<'_, PyType>) -> PyResult<Option<Fast>> {
        let py = ty.py();
        let object_new = py
            .get_type::<pyo3::types::PyAny>()
            .getattr(intern!(py, "__new__"))?;
        if !ty.getattr(intern!(py, "__new__"))?.is(&object_new) {
            return Ok(None);
        }
        let init = ty.getattr(intern!(py, "__init__"))?;
        let Ok(fields) = init.getattr(intern!(py, "__record_fields__")) else {
            return Ok(None);
        };
        let member_type = py
            .import("types")?
            .getattr(intern!(py, "MemberDescriptorType"))?;
        let own = ty.getattr(intern!(py, "__dict__"))?;
        let (mut names, mut descrs) = (Vec::new(), Vec::new());
        for name in fields.try_iter()? {
            let name = name?.cast_into::<PyString>()?;
            // A field stored elsewhere (inherited, a property) is not a plain record.
            let Ok(descr) = own.get_item(&name) else {
                return Ok(None);
            };
            if !descr.get_type().is(&member_type) {
                return Ok(None);
            }
            names.push(PyString::intern(py, name.to_str()?).unbind());
            descrs.push(descr.unbind());
        }
        let descr_type = member_type.cast_into::<PyType>()?;
        // SAFETY: both are live type objects; PyType_GetSlot returns the slot's function
        // pointer (or NULL), which has the signature of the slot it was asked for.
        let (alloc, set, get) = unsafe {
            (
                ffi::PyType_GetSlot(ty.as_type_ptr(), ffi::Py_tp_alloc),
                ffi::PyType_GetSlot(descr_type.as_type_ptr(), ffi::Py_tp_descr_set),
                ffi::PyType_GetSlot(descr_type.as_type_ptr(), ffi::Py_tp_descr_get),
            )
        };
        if alloc.is_null() || set.is_null() || get.is_null() {
            return Ok(None);
        }
        // SAFETY: non-NULL slot pointers of the kinds asked for above.
        let (alloc, set, get) = unsafe {
            (
                std::mem::transmute::<*mut std::ffi::c_void, ffi::allocfunc>(alloc),
                std::mem::transmute::<*mut std::ffi::c_void, ffi::descrsetfunc>(set),
                std::mem::transmute::<*mut std::ffi::c_void, ffi::descrgetfunc>(get),
            )
        };
        Ok(Some(Fast {
            alloc,
            set,
            get,
            names,
            descrs,
        }))
    }

    /// Where field `name` is, `hint` first (build sites name fields in declaration order);
    /// interned names compare by address.
    fn index(&self, name: &Bound<'_, PyString>, hint: usize) -> Option<usize> {
        let at = |i: usize| {
            self.names
                .get(i)
                .is_some_and(|n| n.as_ptr() == name.as_ptr())
        };
        if at(hint) {
            Some(hint)
        } else {
            (0..self.names.len()).find(|&i| at(i))
        }
    }

    /// `obj.<field i>` through the member descriptor (AttributeError if unset).
    fn get<'py>(&self, obj: &Bound<'py, PyAny>, i: usize) -> Option<PyResult<Bound<'py, PyAny>>> {
        let descr = self.descrs.get(i)?;
        let py = obj.py();
        // SAFETY: `get` is member_descriptor's tp_descr_get; it takes borrowed descriptor,
        // instance and type, and returns a new reference or NULL with an exception set.
        let out = unsafe {
            (self.get)(
                descr.as_ptr(),
                obj.as_ptr(),
                obj.get_type_ptr().cast::<ffi::PyObject>(),
            )
        };
        // SAFETY: as above.
        Some(unsafe { Bound::from_owned_ptr_or_err(py, out) })
    }
}

/// Build an `ikecp.message` record from its fields, given in declaration order: through the
/// class's `Fast` path when it has one and the names line up, else by calling the class.
fn new_instance<'py, const N: usize>(
    cls: &Class,
    py: Python<'py>,
    fields: [(&'py Bound<'py, PyString>, Bound<'py, PyAny>); N],
) -> PyResult<Bound<'py, PyAny>> {
    let ty = cls.ty.bind(py);
    match &cls.fast {
        Some(fast)
            if fast.names.len() == N
                && fields
                    .iter()
                    .zip(&fast.names)
                    .all(|((name, _), n)| name.as_ptr() == n.as_ptr()) =>
        {
            // SAFETY: `alloc` is the class's own tp_alloc; it returns a new reference or NULL
            // with an exception set.
            let obj =
                unsafe { Bound::from_owned_ptr_or_err(py, (fast.alloc)(ty.as_type_ptr(), 0))? };
            for ((_, value), descr) in fields.iter().zip(&fast.descrs) {
                // SAFETY: `set` is member_descriptor's tp_descr_set, called as
                // `descr.__set__(obj, value)` with borrowed references; -1 sets an exception.
                if unsafe { (fast.set)(descr.as_ptr(), obj.as_ptr(), value.as_ptr()) } < 0 {
                    return Err(PyErr::fetch(py));
                }
            }
            Ok(obj)
        }
        _ => {
            let kwargs = pyo3::types::PyDict::new(py);
            for (name, value) in fields {
                kwargs.set_item(name, value)?;
            }
            ty.call((), Some(&kwargs))
        }
    }
}

/// `build!(py, class, {"field" => value, ...})`: a message object from its fields.
macro_rules! build {
    ($py:expr, $cls:expr, { $($name:literal => $value:expr),* $(,)? }) => {
        new_instance($cls, $py, [$((intern!($py, $name), $value.into_bound_py_any($py)?)),*])
    };
}

/// A tuple filled in place as its items are built (no intermediate Vec of objects).
pub(crate) fn tuple_of<'py, T>(
    py: Python<'py>,
    items: &[T],
    f: impl Fn(&T) -> PyResult<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let len = ffi::Py_ssize_t::try_from(items.len())
        .map_err(|_| PyOverflowError::new_err("too many items"))?;
    // SAFETY: PyTuple_New returns a new reference or NULL with an exception set. Until every
    // item is stored the tuple holds NULLs, which its deallocator and the GC's traversal
    // skip (the usual C-API way to fill a tuple).
    let tuple = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyTuple_New(len))? };
    for (i, item) in (0..len).zip(items) {
        let obj = f(item)?;
        // SAFETY: `i < len`; PyTuple_SetItem steals the new reference into a fresh tuple.
        if unsafe { ffi::PyTuple_SetItem(tuple.as_ptr(), i, obj.into_ptr()) } < 0 {
            return Err(PyErr::fetch(py));
        }
    }
    Ok(tuple.cast_into::<PyTuple>()?)
}

fn proposal_to_py<'py>(
    py: Python<'py>,
    c: &Classes,
    p: &Proposal<'_>,
) -> PyResult<Bound<'py, PyAny>> {
    let transforms = tuple_of(py, &p.transforms, |t: &Transform<'_>| {
        let attrs = tuple_of(py, &t.attributes, |a: &TransformAttribute<'_>| {
            let value = match &a.value {
                AttrValue::Tv(v) => v.into_bound_py_any(py)?,
                AttrValue::Tlv(v) => PyBytes::new(py, v).into_any(),
            };
            build!(py, &c.transform_attribute, {"type" => a.ty, "value" => value})
        })?;
        build!(py, &c.transform, {"type" => t.ty, "id" => t.id, "attributes" => attrs})
    })?;
    build!(py, &c.proposal, {
        "number" => p.number,
        "protocol_id" => p.protocol_id,
        "spi" => PyBytes::new(py, &p.spi),
        "transforms" => transforms,
    })
}

fn selectors_to_py<'py>(
    py: Python<'py>,
    c: &Classes,
    sels: &[TrafficSelector<'_>],
) -> PyResult<Bound<'py, PyTuple>> {
    tuple_of(py, sels, |s| {
        build!(py, &c.traffic_selector, {
            "ts_type" => s.ts_type,
            "ip_protocol" => s.ip_protocol,
            "start_port" => s.start_port,
            "end_port" => s.end_port,
            "start_addr" => PyBytes::new(py, &s.start_addr),
            "end_addr" => PyBytes::new(py, &s.end_addr),
        })
    })
}

fn payload_to_py<'py>(
    py: Python<'py>,
    c: &Classes,
    p: &Payload<'_>,
) -> PyResult<Bound<'py, PyAny>> {
    let crit = p.critical;
    let bytes = |b: &Bytes<'_>| PyBytes::new(py, b);
    match &p.body {
        Body::Sa(props) => {
            let props = tuple_of(py, props, |pr| proposal_to_py(py, c, pr))?;
            build!(py, &c.sa, {"proposals" => props, "critical" => crit})
        }
        Body::Ke { group, data } => {
            build!(py, &c.ke, {"group" => *group, "data" => bytes(data), "critical" => crit})
        }
        Body::IdI { id_type, data } => {
            build!(py, &c.idi, {"id_type" => *id_type, "data" => bytes(data), "critical" => crit})
        }
        Body::IdR { id_type, data } => {
            build!(py, &c.idr, {"id_type" => *id_type, "data" => bytes(data), "critical" => crit})
        }
        Body::Cert { encoding, data } => build!(py, &c.cert, {
            "encoding" => *encoding, "data" => bytes(data), "critical" => crit,
        }),
        Body::CertReq { encoding, data } => build!(py, &c.certreq, {
            "encoding" => *encoding, "data" => bytes(data), "critical" => crit,
        }),
        Body::Auth { method, data } => {
            build!(py, &c.auth, {"method" => *method, "data" => bytes(data), "critical" => crit})
        }
        Body::Nonce(data) => build!(py, &c.nonce, {"data" => bytes(data), "critical" => crit}),
        Body::Notify {
            protocol_id,
            notify_type,
            spi,
            data,
        } => build!(py, &c.notify, {
            "protocol_id" => *protocol_id,
            "notify_type" => *notify_type,
            "spi" => bytes(spi),
            "data" => bytes(data),
            "critical" => crit,
        }),
        Body::Delete {
            protocol_id,
            spi_size,
            spis,
        } => {
            let spis = PyTuple::new(py, spis.iter().map(|s| PyBytes::new(py, s)))?;
            build!(py, &c.delete, {
                "protocol_id" => *protocol_id,
                "spi_size" => *spi_size,
                "spis" => spis,
                "critical" => crit,
            })
        }
        Body::VendorId(data) => {
            build!(py, &c.vendor_id, {"data" => bytes(data), "critical" => crit})
        }
        Body::TsI(sels) => build!(py, &c.tsi, {
            "selectors" => selectors_to_py(py, c, sels)?, "critical" => crit,
        }),
        Body::TsR(sels) => build!(py, &c.tsr, {
            "selectors" => selectors_to_py(py, c, sels)?, "critical" => crit,
        }),
        Body::Sk { next_payload, data } => build!(py, &c.sk, {
            "next_payload" => *next_payload, "data" => bytes(data), "critical" => crit,
        }),
        Body::Cp {
            cfg_type,
            attributes,
        } => {
            let attrs = tuple_of(
                py,
                attributes,
                |a: &ConfigAttribute<'_>| build!(py, &c.config_attribute, {"type" => a.ty, "value" => bytes(&a.value)}),
            )?;
            build!(py, &c.cp, {"cfg_type" => *cfg_type, "attributes" => attrs, "critical" => crit})
        }
        Body::Eap(data) => build!(py, &c.eap, {"data" => bytes(data), "critical" => crit}),
        Body::Skf {
            next_payload,
            fragment_number,
            total_fragments,
            data,
        } => build!(py, &c.skf, {
            "next_payload" => *next_payload,
            "fragment_number" => *fragment_number,
            "total_fragments" => *total_fragments,
            "data" => bytes(data),
            "critical" => crit,
        }),
        Body::Unknown { ty, data } => {
            build!(py, &c.unknown, {"type" => *ty, "data" => bytes(data), "critical" => crit})
        }
    }
}

fn payloads_to_py<'py>(
    py: Python<'py>,
    c: &Classes,
    payloads: &[Payload<'_>],
) -> PyResult<Bound<'py, PyTuple>> {
    tuple_of(py, payloads, |p| payload_to_py(py, c, p))
}

/// A core message as an `ikecp.message.Message` (for reuse by crypto's `open_message`).
pub(crate) fn message_to_py<'py>(py: Python<'py>, m: &Message<'_>) -> PyResult<Bound<'py, PyAny>> {
    let c = classes(py)?;
    let payloads = payloads_to_py(py, c, &m.payloads)?;
    build!(py, &c.message, {
        "spi_i" => PyBytes::new(py, &m.spi_i),
        "spi_r" => PyBytes::new(py, &m.spi_r),
        "exchange" => m.exchange,
        "flags" => m.flags,
        "message_id" => m.message_id,
        "payloads" => payloads,
        "major_version" => m.major_version,
        "minor_version" => m.minor_version,
    })
}

/// Decode a payload chain into a tuple of `ikecp.message` payloads (for reuse by crypto).
pub(crate) fn decode_payloads_py<'py>(
    py: Python<'py>,
    first_type: u8,
    data: &[u8],
) -> PyResult<Bound<'py, PyTuple>> {
    let c = classes(py)?;
    let payloads = codec::decode_payloads(first_type, data).map_err(|e| parse_error(py, e))?;
    payloads_to_py(py, c, &payloads)
}

// --- encoding: Python objects -> core types -------------------------------------------------

/// `obj.attr`, through the member descriptor when `obj` is exactly one of the record classes.
fn field<'py>(obj: &Bound<'py, PyAny>, attr: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let read = classes(py)?
        .of(obj.get_type_ptr())
        .and_then(|c| c.fast.as_ref())
        .and_then(|f| f.get(obj, f.index(attr, 0)?));
    match read {
        Some(value) => value,
        None => obj.getattr(attr),
    }
}

/// Read an unsigned int attribute; `TypeError` if it is not an int, `ValueError` if it
/// does not fit in `max`.
fn uint(obj: &Bound<'_, PyAny>, attr: &Bound<'_, PyString>, max: u64) -> PyResult<u64> {
    let value = field(obj, attr)?;
    let out_of_range = || {
        PyValueError::new_err(format!(
            "{}.{attr} must be an int in 0..{max}",
            type_name(obj)
        ))
    };
    let n: u64 = value.extract().map_err(|e: PyErr| {
        if e.is_instance_of::<PyOverflowError>(obj.py()) {
            out_of_range()
        } else {
            PyTypeError::new_err(format!("{}.{attr} must be an int", type_name(obj)))
        }
    })?;
    if n > max {
        return Err(out_of_range());
    }
    Ok(n)
}

fn u8_of(obj: &Bound<'_, PyAny>, attr: &Bound<'_, PyString>) -> PyResult<u8> {
    Ok(u8::try_from(uint(obj, attr, 0xFF)?).unwrap_or(u8::MAX))
}

fn u16_of(obj: &Bound<'_, PyAny>, attr: &Bound<'_, PyString>) -> PyResult<u16> {
    Ok(u16::try_from(uint(obj, attr, 0xFFFF)?).unwrap_or(u16::MAX))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "object".to_owned(), |n| n.to_string())
}

fn bytes_value(
    owner: &Bound<'_, PyAny>,
    what: &dyn std::fmt::Display,
    v: &Bound<'_, PyAny>,
) -> PyResult<Bytes<'static>> {
    match v.cast::<PyBytes>() {
        Ok(b) => Ok(Cow::Owned(b.as_bytes().to_vec())),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{}.{what} must be bytes",
            type_name(owner)
        ))),
    }
}

fn bytes_of(obj: &Bound<'_, PyAny>, attr: &Bound<'_, PyString>) -> PyResult<Bytes<'static>> {
    bytes_value(obj, attr, &field(obj, attr)?)
}

fn items<'py>(
    obj: &Bound<'py, PyAny>,
    attr: &Bound<'py, PyString>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    field(obj, attr)?.try_iter()?.collect()
}

fn attribute_from_py(a: &Bound<'_, PyAny>) -> PyResult<TransformAttribute<'static>> {
    let py = a.py();
    let v = field(a, intern!(py, "value"))?;
    let value = if v.is_instance_of::<PyBytes>() {
        AttrValue::Tlv(bytes_value(a, &"value", &v)?)
    } else if v.is_instance_of::<PyInt>() {
        AttrValue::Tv(u16_of(a, intern!(py, "value"))?)
    } else {
        return Err(PyTypeError::new_err(
            "TransformAttribute.value must be int or bytes",
        ));
    };
    let ty = u16::try_from(uint(a, intern!(py, "type"), 0x7FFF)?).unwrap_or(u16::MAX);
    Ok(TransformAttribute { ty, value })
}

fn proposal_from_py(p: &Bound<'_, PyAny>) -> PyResult<Proposal<'static>> {
    let py = p.py();
    let mut transforms = Vec::new();
    for t in items(p, intern!(py, "transforms"))? {
        let attributes = items(&t, intern!(py, "attributes"))?
            .iter()
            .map(attribute_from_py)
            .collect::<PyResult<_>>()?;
        transforms.push(Transform {
            ty: u8_of(&t, intern!(py, "type"))?,
            id: u16_of(&t, intern!(py, "id"))?,
            attributes,
        });
    }
    Ok(Proposal {
        number: u8_of(p, intern!(py, "number"))?,
        protocol_id: u8_of(p, intern!(py, "protocol_id"))?,
        spi: bytes_of(p, intern!(py, "spi"))?,
        transforms,
    })
}

fn selectors_from_py(p: &Bound<'_, PyAny>) -> PyResult<Vec<TrafficSelector<'static>>> {
    let py = p.py();
    items(p, intern!(py, "selectors"))?
        .iter()
        .map(|s| {
            Ok(TrafficSelector {
                ts_type: u8_of(s, intern!(py, "ts_type"))?,
                ip_protocol: u8_of(s, intern!(py, "ip_protocol"))?,
                start_port: u16_of(s, intern!(py, "start_port"))?,
                end_port: u16_of(s, intern!(py, "end_port"))?,
                start_addr: bytes_of(s, intern!(py, "start_addr"))?,
                end_addr: bytes_of(s, intern!(py, "end_addr"))?,
            })
        })
        .collect()
}

fn payload_from_py(c: &Classes, p: &Bound<'_, PyAny>) -> PyResult<Payload<'static>> {
    let py = p.py();
    let ty = p.get_type();
    let is = |cls: &Class| ty.as_ptr() == cls.ty.as_ptr();
    let data = || bytes_of(p, intern!(py, "data"));
    let body = if is(&c.sa) {
        let proposals = items(p, intern!(py, "proposals"))?
            .iter()
            .map(proposal_from_py)
            .collect::<PyResult<_>>()?;
        Body::Sa(proposals)
    } else if is(&c.ke) {
        Body::Ke {
            group: u16_of(p, intern!(py, "group"))?,
            data: data()?,
        }
    } else if is(&c.idi) {
        Body::IdI {
            id_type: u8_of(p, intern!(py, "id_type"))?,
            data: data()?,
        }
    } else if is(&c.idr) {
        Body::IdR {
            id_type: u8_of(p, intern!(py, "id_type"))?,
            data: data()?,
        }
    } else if is(&c.cert) {
        Body::Cert {
            encoding: u8_of(p, intern!(py, "encoding"))?,
            data: data()?,
        }
    } else if is(&c.certreq) {
        Body::CertReq {
            encoding: u8_of(p, intern!(py, "encoding"))?,
            data: data()?,
        }
    } else if is(&c.auth) {
        Body::Auth {
            method: u8_of(p, intern!(py, "method"))?,
            data: data()?,
        }
    } else if is(&c.nonce) {
        Body::Nonce(data()?)
    } else if is(&c.notify) {
        Body::Notify {
            protocol_id: u8_of(p, intern!(py, "protocol_id"))?,
            notify_type: u16_of(p, intern!(py, "notify_type"))?,
            spi: bytes_of(p, intern!(py, "spi"))?,
            data: data()?,
        }
    } else if is(&c.delete) {
        let spis = items(p, intern!(py, "spis"))?
            .iter()
            .map(|s| bytes_value(p, &"spis", s))
            .collect::<PyResult<_>>()?;
        Body::Delete {
            protocol_id: u8_of(p, intern!(py, "protocol_id"))?,
            spi_size: u8_of(p, intern!(py, "spi_size"))?,
            spis,
        }
    } else if is(&c.vendor_id) {
        Body::VendorId(data()?)
    } else if is(&c.tsi) {
        Body::TsI(selectors_from_py(p)?)
    } else if is(&c.tsr) {
        Body::TsR(selectors_from_py(p)?)
    } else if is(&c.sk) {
        Body::Sk {
            next_payload: u8_of(p, intern!(py, "next_payload"))?,
            data: data()?,
        }
    } else if is(&c.cp) {
        let attributes = items(p, intern!(py, "attributes"))?
            .iter()
            .map(|a| {
                Ok(ConfigAttribute {
                    ty: u16::try_from(uint(a, intern!(py, "type"), 0x7FFF)?).unwrap_or(0),
                    value: bytes_of(a, intern!(py, "value"))?,
                })
            })
            .collect::<PyResult<_>>()?;
        Body::Cp {
            cfg_type: u8_of(p, intern!(py, "cfg_type"))?,
            attributes,
        }
    } else if is(&c.eap) {
        Body::Eap(data()?)
    } else if is(&c.skf) {
        Body::Skf {
            next_payload: u8_of(p, intern!(py, "next_payload"))?,
            fragment_number: u16_of(p, intern!(py, "fragment_number"))?,
            total_fragments: u16_of(p, intern!(py, "total_fragments"))?,
            data: data()?,
        }
    } else if is(&c.unknown) {
        Body::Unknown {
            ty: u8_of(p, intern!(py, "type"))?,
            data: data()?,
        }
    } else {
        return Err(PyTypeError::new_err(format!(
            "not an ikecp.message payload: {}",
            type_name(p)
        )));
    };
    Ok(Payload {
        critical: field(p, intern!(py, "critical"))?.is_truthy()?,
        body,
    })
}

fn payloads_from_py(c: &Classes, payloads: &Bound<'_, PyAny>) -> PyResult<Vec<Payload<'static>>> {
    payloads
        .try_iter()?
        .map(|p| payload_from_py(c, &p?))
        .collect()
}

pub(crate) fn encode_error(e: codec::EncodeError) -> PyErr {
    PyValueError::new_err(e.0)
}

/// Encode a sequence of `ikecp.message` payloads (for reuse by crypto).
pub(crate) fn encode_payloads_py(payloads: &Bound<'_, PyAny>) -> PyResult<(u8, Vec<u8>)> {
    let c = classes(payloads.py())?;
    let payloads = payloads_from_py(c, payloads)?;
    codec::encode_payloads(&payloads).map_err(encode_error)
}

fn spi_of(msg: &Bound<'_, PyAny>, attr: &Bound<'_, PyString>) -> PyResult<[u8; 8]> {
    let v = field(msg, attr)?;
    let b = v
        .cast::<PyBytes>()
        .map_err(|_| PyTypeError::new_err("Message.spi_i/spi_r must be bytes"))?;
    b.as_bytes()
        .try_into()
        .map_err(|_| PyValueError::new_err("Message.spi_i/spi_r must be 8 bytes"))
}

/// An `ikecp.message.Message` as a core message (for reuse by crypto's `seal_message`).
pub(crate) fn message_from_py(msg: &Bound<'_, PyAny>) -> PyResult<Message<'static>> {
    let py = msg.py();
    let c = classes(py)?;
    Ok(Message {
        spi_i: spi_of(msg, intern!(py, "spi_i"))?,
        spi_r: spi_of(msg, intern!(py, "spi_r"))?,
        payloads: payloads_from_py(c, &field(msg, intern!(py, "payloads"))?)?,
        exchange: u8_of(msg, intern!(py, "exchange"))?,
        flags: u8_of(msg, intern!(py, "flags"))?,
        message_id: u32::try_from(uint(msg, intern!(py, "message_id"), 0xFFFF_FFFF)?)
            .unwrap_or(u32::MAX),
        major_version: u8_of(msg, intern!(py, "major_version"))?,
        minor_version: u8_of(msg, intern!(py, "minor_version"))?,
    })
}

// --- the functions of the Backend protocol --------------------------------------------------

/// Parse one IKE message (header + payload chain); SK stays sealed.
#[pyfunction]
fn decode_message<'py>(py: Python<'py>, data: Buf) -> PyResult<Bound<'py, PyAny>> {
    let m = codec::decode_message(&data).map_err(|e| parse_error(py, e))?;
    message_to_py(py, &m)
}

/// Serialize a Message; lengths, chaining and counts are computed here.
#[pyfunction]
fn encode_message<'py>(py: Python<'py>, msg: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let m = message_from_py(msg)?;
    let wire = codec::encode_message(&m).map_err(encode_error)?;
    Ok(PyBytes::new(py, &wire))
}

/// A payload type argument: `ValueError` outside 0..255, `TypeError` if not an int.
pub(crate) fn first_type_arg(py: Python<'_>, first_type: &Bound<'_, PyAny>) -> PyResult<u8> {
    first_type.extract::<u8>().map_err(|e| {
        if e.is_instance_of::<PyOverflowError>(py) {
            PyValueError::new_err("first_type must be an int in 0..255")
        } else {
            PyTypeError::new_err("first_type must be an int")
        }
    })
}

/// Parse a payload chain starting with type `first_type` (e.g. decrypted SK contents).
#[pyfunction]
fn decode_payloads<'py>(
    py: Python<'py>,
    first_type: &Bound<'py, PyAny>,
    data: Buf,
) -> PyResult<Bound<'py, PyTuple>> {
    let first = first_type_arg(py, first_type)?;
    decode_payloads_py(py, first, &data)
}

/// Serialize a payload chain; returns (type of the first payload or 0, bytes).
#[pyfunction]
fn encode_payloads<'py>(
    py: Python<'py>,
    payloads: &Bound<'py, PyAny>,
) -> PyResult<(u8, Bound<'py, PyBytes>)> {
    let (first, data) = encode_payloads_py(payloads)?;
    Ok((first, PyBytes::new(py, &data)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode_message, m)?)?;
    m.add_function(wrap_pyfunction!(encode_message, m)?)?;
    m.add_function(wrap_pyfunction!(decode_payloads, m)?)?;
    m.add_function(wrap_pyfunction!(encode_payloads, m)?)?;
    Ok(())
}
