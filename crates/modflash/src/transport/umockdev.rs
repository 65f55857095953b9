//! The only unsafe code of `sim attach`: umockdev (and the few GLib/GObject functions it
//! needs), loaded at run time with `dlopen`, wrapped in a small safe API.
//!
//! * [`Umockdev::load`] opens `libumockdev.so.0`; building modflash never needs umockdev.
//! * [`Testbed`] is a fake `/sys` + `/dev` tree for a child process started with
//!   `LD_PRELOAD=libumockdev-preload.so.0` and `UMOCKDEV_DIR`.
//! * [`Testbed::attach_ioctl`] routes the child's ioctls on one device node to an
//!   [`IoctlHandler`], called on umockdev's own worker thread with a [`Client`] that can read
//!   and write the client's memory ([`Data`]) and complete the ioctl.
//!
//! Loaded libraries are never unloaded: umockdev keeps a worker thread running.

use std::ffi::{c_char, c_int, c_long, c_ulong, c_void, CStr, CString};
use std::sync::{Arc, OnceLock};

/// How to install umockdev, for error messages.
pub const INSTALL_HELP: &str = "install umockdev: `sudo apt-get install umockdev libumockdev-dev` \
(Debian/Ubuntu; the preload library comes with the umockdev and libumockdev0 packages), \
`sudo dnf install umockdev` (Fedora)";

/// `UMockdevIoctlData`: a GObject header, then the public fields.
#[repr(C)]
struct RawData {
    /// GTypeInstance pointer, ref_count (+ padding), qdata.
    parent: [usize; 3],
    data: *mut u8,
    data_len: c_int,
    client_addr: c_ulong,
    private: *mut c_void,
}

#[repr(C)]
struct GError {
    domain: u32,
    code: c_int,
    message: *const c_char,
}

type Ptr = *mut c_void;

struct Api {
    testbed_new: unsafe extern "C" fn() -> Ptr,
    testbed_get_root_dir: unsafe extern "C" fn(Ptr) -> *mut c_char,
    testbed_add_from_string: unsafe extern "C" fn(Ptr, *const c_char, *mut *mut GError) -> c_int,
    testbed_remove_device: unsafe extern "C" fn(Ptr, *const c_char),
    testbed_attach_ioctl: unsafe extern "C" fn(Ptr, *const c_char, Ptr, *mut *mut GError) -> c_int,
    ioctl_base_new: unsafe extern "C" fn() -> Ptr,
    client_get_request: unsafe extern "C" fn(Ptr) -> c_ulong,
    client_get_arg: unsafe extern "C" fn(Ptr) -> *mut RawData,
    client_complete: unsafe extern "C" fn(Ptr, c_long, c_int),
    client_execute: unsafe extern "C" fn(Ptr, *mut c_int, *mut *mut GError) -> c_int,
    data_resolve:
        unsafe extern "C" fn(*mut RawData, usize, usize, *mut *mut GError) -> *mut RawData,
    data_set_ptr: unsafe extern "C" fn(*mut RawData, usize, *mut RawData) -> c_int,
    signal_connect_data: unsafe extern "C" fn(Ptr, *const c_char, Ptr, Ptr, Ptr, c_int) -> c_ulong,
    object_unref: unsafe extern "C" fn(Ptr),
    free: unsafe extern "C" fn(Ptr),
    error_free: unsafe extern "C" fn(*mut GError),
}

/// What umockdev could not do, in words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UmockdevError(String);

impl UmockdevError {
    /// An error saying `what` went wrong with the test bed.
    pub fn new(what: impl Into<String>) -> Self {
        Self(what.into())
    }
}

/// The loaded umockdev library.
pub struct Umockdev {
    api: Api,
}

static LOADED: OnceLock<Result<Umockdev, UmockdevError>> = OnceLock::new();

/// Loads `name` and leaks it: the worker thread umockdev starts must never see it unloaded.
fn open(name: &str) -> Result<&'static libloading::Library, UmockdevError> {
    // SAFETY: loading umockdev/GLib runs their ELF constructors, which only initialise
    // their own state (type registration); no Rust invariants depend on them.
    let lib = unsafe { libloading::Library::new(name) }
        .map_err(|e| UmockdevError(format!("cannot load {name}: {e}")))?;
    Ok(Box::leak(Box::new(lib)))
}

macro_rules! sym {
    ($lib:expr, $name:literal) => {{
        // SAFETY: the symbol is declared in umockdev.h / glib-object.h with exactly the
        // signature of the field it is stored in (pointer-sized GObject handles, C ints and
        // longs); the library stays loaded for the life of the process, so the function
        // pointer copied out of the symbol stays valid.
        let s: libloading::Symbol<'static, _> = unsafe {
            $lib.get(concat!($name, "\0").as_bytes())
        }
        .map_err(|e| UmockdevError(format!("the umockdev library has no {}: {e}", $name)))?;
        *s
    }};
}

impl Umockdev {
    /// Loads umockdev (once per process); an error names the library and how to install it.
    pub fn load() -> Result<&'static Umockdev, UmockdevError> {
        LOADED
            .get_or_init(|| {
                let um = open("libumockdev.so.0")?;
                let gobject = open("libgobject-2.0.so.0")?;
                let glib = open("libglib-2.0.so.0")?;
                Ok(Umockdev {
                    api: Api {
                        testbed_new: sym!(um, "umockdev_testbed_new"),
                        testbed_get_root_dir: sym!(um, "umockdev_testbed_get_root_dir"),
                        testbed_add_from_string: sym!(um, "umockdev_testbed_add_from_string"),
                        testbed_remove_device: sym!(um, "umockdev_testbed_remove_device"),
                        testbed_attach_ioctl: sym!(um, "umockdev_testbed_attach_ioctl"),
                        ioctl_base_new: sym!(um, "umockdev_ioctl_base_new"),
                        client_get_request: sym!(um, "umockdev_ioctl_client_get_request"),
                        client_get_arg: sym!(um, "umockdev_ioctl_client_get_arg"),
                        client_complete: sym!(um, "umockdev_ioctl_client_complete"),
                        client_execute: sym!(um, "umockdev_ioctl_client_execute"),
                        data_resolve: sym!(um, "umockdev_ioctl_data_resolve"),
                        data_set_ptr: sym!(um, "umockdev_ioctl_data_set_ptr"),
                        signal_connect_data: sym!(gobject, "g_signal_connect_data"),
                        object_unref: sym!(gobject, "g_object_unref"),
                        free: sym!(glib, "g_free"),
                        error_free: sym!(glib, "g_error_free"),
                    },
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Takes the message out of a GError and frees it.
    fn error_text(&self, err: *mut GError, what: &str) -> String {
        if err.is_null() {
            return format!("{what} failed");
        }
        // SAFETY: a non-null GError set by umockdev: `message` is a NUL-terminated string
        // owned by the error, which we free right after copying it.
        let text = unsafe {
            let m = (*err).message;
            let text = if m.is_null() {
                String::new()
            } else {
                CStr::from_ptr(m).to_string_lossy().into_owned()
            };
            (self.api.error_free)(err);
            text
        };
        format!("{what}: {text}")
    }
}

fn cstring(s: &str) -> Result<CString, UmockdevError> {
    CString::new(s).map_err(|_| UmockdevError(format!("{s:?} contains a NUL byte")))
}

/// A umockdev test bed: a temporary `/sys` and `/dev` tree.
pub struct Testbed {
    lib: &'static Umockdev,
    raw: Ptr,
    handlers: Vec<(Ptr, *mut Arc<dyn IoctlHandler>)>,
}

// SAFETY: the testbed is only used from the thread that owns this value; umockdev's worker
// thread never touches it. Moving it between threads is fine for a GObject.
unsafe impl Send for Testbed {}

impl Testbed {
    /// Creates an empty test bed (and sets `$UMOCKDEV_DIR` in this process).
    pub fn new(lib: &'static Umockdev) -> Result<Self, UmockdevError> {
        // SAFETY: plain constructor; returns a new reference or aborts.
        let raw = unsafe { (lib.api.testbed_new)() };
        if raw.is_null() {
            return Err(UmockdevError("umockdev could not create a test bed".into()));
        }
        Ok(Self {
            lib,
            raw,
            handlers: Vec::new(),
        })
    }

    /// The test bed's root directory (the child's `UMOCKDEV_DIR`).
    pub fn root_dir(&self) -> String {
        // SAFETY: `raw` is a live testbed; the returned string is newly allocated and freed
        // with g_free after copying.
        unsafe {
            let p = (self.lib.api.testbed_get_root_dir)(self.raw);
            if p.is_null() {
                return String::new();
            }
            let s = CStr::from_ptr(p).to_string_lossy().into_owned();
            (self.lib.api.free)(p.cast());
            s
        }
    }

    /// Adds devices from umockdev-record text (`P:`, `N:`, `E:`, `A:`, `H:` lines).
    pub fn add_from_string(&self, text: &str) -> Result<(), UmockdevError> {
        let c = cstring(text)?;
        let mut err: *mut GError = std::ptr::null_mut();
        // SAFETY: live testbed, NUL-terminated text, valid GError out-pointer.
        let ok = unsafe { (self.lib.api.testbed_add_from_string)(self.raw, c.as_ptr(), &mut err) };
        if ok == 0 {
            return Err(UmockdevError(
                self.lib
                    .error_text(err, "umockdev rejected the device description"),
            ));
        }
        Ok(())
    }

    /// Removes the device at `syspath` (`/sys/devices/...`).
    pub fn remove_device(&self, syspath: &str) -> Result<(), UmockdevError> {
        let c = cstring(syspath)?;
        // SAFETY: live testbed, NUL-terminated path.
        unsafe { (self.lib.api.testbed_remove_device)(self.raw, c.as_ptr()) };
        Ok(())
    }

    /// Routes ioctls on `devnode` (`/dev/...`) to `handler`.
    pub fn attach_ioctl(
        &mut self,
        devnode: &str,
        handler: Arc<dyn IoctlHandler>,
    ) -> Result<(), UmockdevError> {
        let node = cstring(devnode)?;
        let api = &self.lib.api;
        // SAFETY: plain constructor of a new UMockdevIoctlBase reference.
        let base = unsafe { (api.ioctl_base_new)() };
        if base.is_null() {
            return Err(UmockdevError(
                "umockdev could not create an ioctl handler".into(),
            ));
        }
        let user: *mut Arc<dyn IoctlHandler> = Box::into_raw(Box::new(handler));
        // SAFETY: `base` is live; the callback has the "handle-ioctl" signature
        // (gboolean (*)(UMockdevIoctlBase*, UMockdevIoctlClient*, gpointer)); `user` stays
        // valid until Drop, after the handler is unreferenced.
        unsafe {
            (api.signal_connect_data)(
                base,
                c"handle-ioctl".as_ptr(),
                handle_ioctl as *const () as Ptr,
                user.cast(),
                std::ptr::null_mut(),
                0,
            );
        }
        self.handlers.push((base, user));
        let mut err: *mut GError = std::ptr::null_mut();
        // SAFETY: live testbed and handler, NUL-terminated node path, GError out-pointer.
        let ok = unsafe { (api.testbed_attach_ioctl)(self.raw, node.as_ptr(), base, &mut err) };
        if ok == 0 {
            return Err(UmockdevError(self.lib.error_text(
                err,
                &format!("cannot attach an ioctl handler to {devnode}"),
            )));
        }
        Ok(())
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // SAFETY: each pointer is a reference we own; the test bed's destructor removes its
        // directory. The handler contexts are freed after their GObjects are gone (the child
        // has exited, so no ioctl is in flight).
        unsafe {
            for (base, _) in &self.handlers {
                (self.lib.api.object_unref)(*base);
            }
            (self.lib.api.object_unref)(self.raw);
            for (_, user) in self.handlers.drain(..) {
                drop(Box::from_raw(user));
            }
        }
    }
}

/// Answers the ioctls of one device node (called on umockdev's worker thread).
pub trait IoctlHandler: Send + Sync {
    /// Handles `client`'s ioctl: complete it and return true, or return false to let the
    /// client get ENOTTY.
    fn ioctl(&self, client: &mut Client<'_>) -> bool;
}

unsafe extern "C" fn handle_ioctl(_base: Ptr, client: Ptr, user: Ptr) -> c_int {
    if client.is_null() || user.is_null() {
        return 0;
    }
    let Ok(lib) = Umockdev::load() else { return 0 };
    // SAFETY: `user` is the Box<Arc<..>> registered in attach_ioctl, alive until the handler
    // is unreferenced in Testbed::drop.
    let handler = unsafe { &*(user as *const Arc<dyn IoctlHandler>) };
    let mut c = Client {
        lib,
        raw: client,
        _life: std::marker::PhantomData,
    };
    // A panic must not unwind into C.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.ioctl(&mut c))) {
        Ok(handled) => c_int::from(handled),
        Err(_) => {
            c.complete(-1, libc::EIO);
            1
        }
    }
}

/// One ioctl call of the client, valid during the callback.
pub struct Client<'a> {
    lib: &'static Umockdev,
    raw: Ptr,
    _life: std::marker::PhantomData<&'a ()>,
}

impl Client<'_> {
    /// The ioctl request number.
    pub fn request(&self) -> u64 {
        // SAFETY: `raw` is the live client of this callback. (c_ulong is u32 on some targets.)
        #[allow(clippy::useless_conversion)]
        u64::from(unsafe { (self.lib.api.client_get_request)(self.raw) })
    }

    /// The client's argument, resolved as `len` bytes at `offset` of the pointer it passed.
    pub fn arg(&self, offset: usize, len: usize) -> Option<Data> {
        // SAFETY: live client; get_arg returns a borrowed data object, resolve returns a new
        // reference (or NULL) that Data owns.
        unsafe {
            let arg = (self.lib.api.client_get_arg)(self.raw);
            if arg.is_null() {
                return None;
            }
            Data::resolve_raw(self.lib, arg, offset, len)
        }
    }

    /// Runs the ioctl on the client's own file descriptor (the real file behind the node, such
    /// as a pty) and returns its result and errno, for the handler to complete with.
    pub fn execute(&mut self) -> Result<(i64, i32), UmockdevError> {
        let mut errno: c_int = 0;
        let mut err: *mut GError = std::ptr::null_mut();
        // SAFETY: live client with an uncompleted ioctl; valid out-pointers.
        let result = unsafe { (self.lib.api.client_execute)(self.raw, &mut errno, &mut err) };
        if !err.is_null() {
            return Err(UmockdevError(
                self.lib
                    .error_text(err, "cannot run the ioctl in the client"),
            ));
        }
        Ok((i64::from(result), errno))
    }

    /// Ends the ioctl with `result` and `errno` (changed client memory is written back).
    pub fn complete(&mut self, result: i64, errno: i32) {
        // SAFETY: live client; completing once per callback as umockdev requires.
        unsafe { (self.lib.api.client_complete)(self.raw, result as c_long, errno) };
    }
}

/// A block of the client's memory copied into this process (`UMockdevIoctlData`).
pub struct Data {
    lib: &'static Umockdev,
    raw: *mut RawData,
}

// SAFETY: GObject reference counting is thread-safe; a Data is only read and written by the
// umockdev worker thread, one callback at a time (the caller keeps queued Data behind a
// Mutex).
unsafe impl Send for Data {}

impl Data {
    /// SAFETY: `parent` must be a live UMockdevIoctlData.
    unsafe fn resolve_raw(
        lib: &'static Umockdev,
        parent: *mut RawData,
        offset: usize,
        len: usize,
    ) -> Option<Data> {
        let mut err: *mut GError = std::ptr::null_mut();
        // SAFETY: per the function contract; the result is a new reference or NULL.
        let raw = unsafe { (lib.api.data_resolve)(parent, offset, len, &mut err) };
        if !err.is_null() {
            let _ = lib.error_text(err, "resolve");
        }
        (!raw.is_null()).then_some(Data { lib, raw })
    }

    /// The bytes.
    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `raw` is live; `data` points to `data_len` bytes owned by the object (or
        // is NULL with length 0).
        unsafe {
            let d = &*self.raw;
            if d.data.is_null() || d.data_len <= 0 {
                return &mut [];
            }
            std::slice::from_raw_parts_mut(d.data, d.data_len as usize)
        }
    }

    /// The block the pointer at `offset` of this block points to, `len` bytes long (the
    /// pointer in this copy is rewritten to the local copy; umockdev maps it back).
    pub fn resolve(&self, offset: usize, len: usize) -> Option<Data> {
        // SAFETY: `raw` is live.
        unsafe { Data::resolve_raw(self.lib, self.raw, offset, len) }
    }

    /// Makes the pointer at `offset` of this block point to `child` in the client.
    pub fn set_ptr(&self, offset: usize, child: &Data) -> bool {
        // SAFETY: both objects are live; set_ptr takes its own reference to `child`.
        unsafe { (self.lib.api.data_set_ptr)(self.raw, offset, child.raw) != 0 }
    }
}

impl Drop for Data {
    fn drop(&mut self) {
        // SAFETY: we own one reference.
        unsafe { (self.lib.api.object_unref)(self.raw.cast()) };
    }
}
