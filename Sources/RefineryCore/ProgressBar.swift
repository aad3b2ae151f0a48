/// The bar of a status line: `[#########...........]` filled in proportion to `done` of `total`
/// (ASCII, so it reads the same in a terminal, a log file and a CI page).
public enum ProgressBar {
    public static func render(done: Int, total: Int, width: Int = 20) -> String {
        let filled = total > 0 ? min(width, max(0, done * width / total)) : 0
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
    }
}
