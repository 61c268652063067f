//! No store lock across slow work: a save whose reader stalls blocks neither readers nor
//! writers (list, get, tag, load, rmi, gc), and what it streams stays intact even when its
//! image is removed meanwhile.

mod common;

use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use barge_image::{ImageStore, SaveFormat};
use common::*;

/// A writer that stops (as a client that stopped reading) after its first 64 KiB until the
/// gate opens.
struct StalledWriter {
    buf: Vec<u8>,
    stalled: Option<mpsc::Sender<()>>,
    gate: mpsc::Receiver<()>,
}

impl Write for StalledWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() >= 64 * 1024 {
            if let Some(tx) = self.stalled.take() {
                let _ = tx.send(());
                let _ = self.gate.recv();
            }
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` and fails if it takes longer than a generous bound (it used to wait for the
/// whole save, i.e. forever here): then the gate is opened so the test ends, and it fails.
fn quick<T: Send>(what: &str, gate: &mpsc::Sender<()>, f: impl FnOnce() -> T + Send) -> T {
    let t = Instant::now();
    std::thread::scope(|s| {
        let h = s.spawn(f);
        while !h.is_finished() {
            if t.elapsed() > Duration::from_secs(10) {
                let _ = gate.send(());
                let _ = h.join();
                panic!("{what} waited for the stalled save");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        h.join().unwrap()
    })
}

#[test]
fn stalled_save_blocks_nobody_and_survives_rmi() {
    let (_d, store) = new_store();
    let store = std::sync::Arc::new(store);
    store.load_path(&oci_layout(), None).unwrap();
    let (stalled_tx, stalled_rx) = mpsc::channel();
    let (gate_tx, gate_rx) = mpsc::channel();
    let s = store.clone();
    let saver = std::thread::spawn(move || {
        let mut w = StalledWriter {
            buf: Vec::new(),
            stalled: Some(stalled_tx),
            gate: gate_rx,
        };
        s.save(&["multilayer:1".to_string()], SaveFormat::Docker, &mut w)
            .map(|()| w.buf)
    });
    stalled_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the save started streaming");

    quick("list", &gate_tx, || {
        assert!(!store.list().unwrap().is_empty())
    });
    quick("get", &gate_tx, || store.get("multilayer:1").unwrap());
    quick("tag", &gate_tx, || {
        store.tag("busybox:1.35", "other:1").unwrap()
    });
    quick("load", &gate_tx, || {
        store.load_path(&docker_save(), None).unwrap()
    });
    // The saved image goes away while its archive is half written: its blobs are pinned.
    quick("rmi", &gate_tx, || {
        store.remove("multilayer:1", false, &|_| None).unwrap();
    });
    quick("gc", &gate_tx, || store.gc().unwrap());
    assert!(store.get("multilayer:1").is_err());

    gate_tx.send(()).unwrap();
    let archive = saver.join().unwrap().expect("the save completes");
    // What it wrote is a whole, loadable image.
    let (d2, fresh) = new_store();
    let tar = d2.path().join("ml.tar");
    std::fs::write(&tar, &archive).unwrap();
    let loaded = fresh.load_path(&tar, None).unwrap();
    assert_eq!(loaded[0].references, vec!["multilayer:1".to_string()]);
    // Its layers were collected once the save let go of them.
    let before = blobs(&store).len();
    store.gc().unwrap();
    assert!(blobs(&store).len() < before, "unpinned blobs collected");
}

#[test]
fn concurrent_loads_of_one_image_and_a_failing_one_keep_the_store_whole() {
    let (d, store) = new_store();
    let store = std::sync::Arc::new(store);
    // A truncated copy of the archive fails after storing some of the same blobs.
    let data = std::fs::read(docker_save()).unwrap();
    let cut = d.path().join("cut.tar.gz");
    std::fs::write(&cut, &data[..data.len() * 2 / 3]).unwrap();
    let mut threads = Vec::new();
    for i in 0..4 {
        let s = store.clone();
        let cut = cut.clone();
        threads.push(std::thread::spawn(move || {
            if i % 2 == 0 {
                s.load_path(&docker_save(), None).map(|_| ())
            } else {
                let _ = s.load_path(&cut, None);
                Ok(())
            }
        }));
    }
    for t in threads {
        t.join().unwrap().unwrap();
    }
    // Every blob the loaded images need is there: saving them reads each one.
    let mut out = Vec::new();
    store
        .save(
            &[
                "localhost/busybox:1.35".to_string(),
                "localhost/tiny-multilayer:1".to_string(),
            ],
            SaveFormat::Oci,
            &mut out,
        )
        .unwrap();
    let reopened = ImageStore::open(store.root()).unwrap();
    assert_eq!(reopened.list().unwrap().len(), store.list().unwrap().len());
}

/// A layer stored by an operation before any image references it (a build's step) survives a
/// gc while the operation holds the store, and goes with the next gc once it let go.
#[test]
fn held_content_survives_gc_until_released() {
    use barge_image::digest::{sha256_digest, Descriptor};
    let (_d, store) = new_store();
    let tar = raw_tar(&[file("held.txt", b"held")]);
    let diff_id = sha256_digest(&tar);
    let desc = Descriptor {
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        digest: diff_id.clone(),
        size: tar.len() as u64,
        ..Default::default()
    };
    let hold = store.hold();
    store
        .ingest_layer(&mut &tar[..], &desc, &diff_id, &diff_id)
        .unwrap();
    assert!(store.has_blob(&diff_id));
    store.gc().unwrap();
    assert!(store.has_blob(&diff_id), "gc took a held layer");
    drop(hold);
    store.gc().unwrap();
    assert!(!store.has_blob(&diff_id), "released content stays forever");
}
