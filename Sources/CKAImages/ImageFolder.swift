import Foundation

/// The images of a dataset directory, listed in torchvision's `ImageFolder` order.
///
/// - **Class folders** (`root/<class>/…/<file>`): classes are the subdirectories of `root`, sorted by code
///   point as Python sorts strings (every subdirectory counts, even one without images, so indices agree with
///   torchvision); each class folder is walked recursively (symbolic links followed) in the order of
///   `sorted(os.walk(…))`, files sorted within each folder. Labels are class indices; ids are paths relative to
///   `root` (`cat/0001.jpg`).
/// - **Flat** (`root/<file>`): the files directly in `root`, sorted; labels are −1; ids are the file names.
///
/// Only names ending in `.jpg`, `.jpeg` or `.png` (any case) are listed; torchvision would also list
/// `.ppm .bmp .pgm .tif .tiff .webp`. Hidden files and folders are listed like any other, as torchvision does.
public struct ImageFolder: Sendable {
    /// How the images are laid out.
    public enum Layout: String, Sendable, CaseIterable {
        case classFolders, flat
    }

    /// One image: its stable id (relative path), label (class index or −1) and location.
    public struct Sample: Sendable, Hashable {
        public var id: String
        public var label: Int
        public var url: URL
        public init(id: String, label: Int, url: URL) { self.id = id; self.label = label; self.url = url }
    }

    /// File name endings that are listed (compared in lower case).
    public static let extensions = [".jpg", ".jpeg", ".png"]

    public let root: URL
    public let layout: Layout
    /// Class names in index order (empty for a flat folder).
    public let classes: [String]
    /// The images, in order.
    public let samples: [Sample]

    /// Lists `root`.
    /// - Parameters:
    ///   - layout: nil detects it: class folders if any subdirectory holds an image, flat otherwise.
    ///   - perClassLimit: keep at most this many images of each class (the first ones).
    ///   - limit: keep at most this many images in all (the first ones, after `perClassLimit`).
    /// - Throws: `ImageError.unreadable` if `root` is not a readable directory, `.noImages` if nothing is listed.
    public init(root: URL, layout: Layout? = nil, limit: Int? = nil, perClassLimit: Int? = nil) throws {
        self.root = root
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: root.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ImageError.unreadable(path: root.path, reason: "not a directory")
        }
        let top = try ImageFolder.entries(of: root)
        var found: (Layout, [String], [Sample])?
        if layout != .flat {
            let classes = top.directories
            var samples: [Sample] = []
            for (label, name) in classes.enumerated() {
                var files = try ImageFolder.walk(root.appendingPathComponent(name), relative: name)
                if let k = perClassLimit { files = Array(files.prefix(max(k, 0))) }
                samples += files.map { Sample(id: $0.id, label: label, url: $0.url) }
            }
            if layout == .classFolders || !samples.isEmpty { found = (.classFolders, classes, samples) }
        }
        if found == nil {
            var files = top.files.filter(ImageFolder.isImageName).map {
                Sample(id: $0, label: -1, url: root.appendingPathComponent($0))
            }
            if let k = perClassLimit { files = Array(files.prefix(max(k, 0))) }
            found = (.flat, [], files)
        }
        let (resolvedLayout, classes, listed) = found!
        var samples = listed
        if let n = limit { samples = Array(samples.prefix(max(n, 0))) }
        if samples.isEmpty && (limit ?? 1) > 0 && (perClassLimit ?? 1) > 0 {
            throw ImageError.noImages(path: root.path)
        }
        self.layout = resolvedLayout
        self.classes = classes
        self.samples = samples
    }

    /// Ids of all samples, in order.
    public var ids: [String] { samples.map(\.id) }
    /// Labels of all samples, in order.
    public var labels: [Int] { samples.map(\.label) }
    /// Number of samples.
    public var count: Int { samples.count }

    static func isImageName(_ name: String) -> Bool {
        let lower = name.lowercased()
        return extensions.contains { lower.hasSuffix($0) }
    }

    /// Python's `sorted` for str: code-point order.
    static func pythonSorted(_ names: [String]) -> [String] {
        names.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
    }

    /// Subdirectories and other entries of `directory` (symbolic links followed), each sorted.
    static func entries(of directory: URL) throws -> (directories: [String], files: [String]) {
        let fm = FileManager.default
        let names: [String]
        do {
            names = try fm.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw ImageError.unreadable(path: directory.path, reason: RGBImage.reason(error))
        }
        var directories: [String] = [], files: [String] = []
        for name in names {
            var isDirectory: ObjCBool = false
            if fm.fileExists(atPath: directory.appendingPathComponent(name).path, isDirectory: &isDirectory),
                isDirectory.boolValue
            {
                directories.append(name)
            } else {
                files.append(name)
            }
        }
        return (pythonSorted(directories), pythonSorted(files))
    }

    /// The image files under `directory`, in the order of torchvision's
    /// `for root, _, fnames in sorted(os.walk(directory, followlinks=True)): for fname in sorted(fnames)`.
    static func walk(_ directory: URL, relative: String) throws -> [(id: String, url: URL)] {
        // Every folder with its path relative to `directory` ("" for itself); sorting the full paths
        // equals sorting these, as they share the prefix.
        var folders: [(relative: String, url: URL)] = []
        func visit(_ url: URL, _ rel: String, ancestors: Set<String>) throws {
            let real = url.resolvingSymlinksInPath().path
            guard !ancestors.contains(real), ancestors.count < 64 else { return }  // symbolic-link cycle
            folders.append((rel, url))
            for d in try entries(of: url).directories {
                try visit(
                    url.appendingPathComponent(d), rel.isEmpty ? d : rel + "/" + d,
                    ancestors: ancestors.union([real]))
            }
        }
        try visit(directory, "", ancestors: [])
        folders.sort { $0.relative.unicodeScalars.lexicographicallyPrecedes($1.relative.unicodeScalars) }
        var out: [(id: String, url: URL)] = []
        for folder in folders {
            let prefix = folder.relative.isEmpty ? relative : relative + "/" + folder.relative
            for f in try entries(of: folder.url).files where isImageName(f) {
                out.append((prefix + "/" + f, folder.url.appendingPathComponent(f)))
            }
        }
        return out
    }
}
