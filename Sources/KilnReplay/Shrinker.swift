import Foundation
import KilnScenario
import KilnStores
import Logging
import Yams

/// What a shrink step tried to remove.
public enum ShrinkStage: String, Codable, Sendable {
    /// The bundle as recorded (fault events pinned at their planned offsets): must reproduce before anything else.
    case baseline
    /// ddmin over the fault events.
    case faults
    /// The dataset range (and the bulk phases' rows with it).
    case rows
    case duration
    case rate
    /// One operation out of a phase's mix.
    case mix
}

public struct ShrinkStep: Codable, Sendable {
    public var number: Int
    public var stage: ShrinkStage
    /// What the candidate removed or reduced, for people.
    public var change: String
    public var tries: Int
    public var reproduced: Bool
    public var seconds: Double
    /// The run directory of the try that reproduced (or of the last try).
    public var run: String?
    /// Set when the step did not run because the budget was spent.
    public var skipped: Bool = false
    /// Reproduced in some but not all tries of a stage that needs every try (rows, duration, rate, mix): reported,
    /// not made the minimal bundle.
    public var flaky: Bool = false
    /// Reproduced in every try that ran, but the budget (or a stop) ended it before all tries of a stage that needs
    /// every try: not adopted, and not called flaky.
    public var unfinished: Bool = false
}

/// When a candidate counts as reproducing.
enum AdoptionPolicy: Equatable {
    /// The target appeared in any of the tries (the baseline; ddmin over faults, where a flaky match still proves a
    /// fault causal).
    case anyTry
    /// The target appeared in every try (rows, durations, rates, the mix: a smaller candidate reproduces less often,
    /// and the minimal bundle must reproduce as a rule, not once).
    case everyTry
}

public struct ShrinkOptions: Sendable {
    public var budgetSeconds: Double
    public var tries: Int
    /// The anomaly sites a candidate must show (at least one try); nil: every site of the original, or, when the
    /// original failed without an anomaly, its failed thresholds and drills.
    public var target: Set<AnomalySite>?
    public var stack: URL?

    public init(budgetSeconds: Double, tries: Int, target: Set<AnomalySite>?, stack: URL?) {
        self.budgetSeconds = budgetSeconds
        self.tries = tries
        self.target = target
        self.stack = stack
    }
}

public struct ShrinkResult: Sendable {
    public var steps: [ShrinkStep]
    /// The run directory (with its own bundle.json) of the smallest candidate that reproduced; nil when not even the
    /// baseline did.
    public var minimalRun: URL?
    /// The minimal candidate's scenario file.
    public var minimalScenario: URL?
    public var faultsKept: [String]
    public var faultsOriginal: [String]
    public var rowsKept: Int64?
    public var rowsOriginal: Int64?
    public var budgetSpent: Bool
    public var seconds: Double
}

/// `kiln shrink`: delta debugging over the fault events, then halving of the dataset range, the phase durations and
/// the arrival rates, then removal of operations from the mixes. Every candidate is a scenario file replayed up to
/// `tries` times with `kiln run --check`; it is kept when the target anomaly appears at least once. Stops when the
/// budget is spent, with the smallest candidate that reproduced.
public final class Shrinker {
    let bundleDirectory: URL
    let bundle: ReplayBundle
    let original: RunOutcome
    let launcher: any RunLauncher
    let workDirectory: URL
    let options: ShrinkOptions
    let knownOperations: Set<String>
    /// The pipeline sinks the backends provide (`LoadRun.knownSinks()`), for parsing the bundle's scenario.
    let knownSinks: [PipelineSpec.KnownSink]
    let logger: Logger
    let stop: () -> Bool
    private let started = Date()
    private var steps: [ShrinkStep] = []
    private var best: (document: ScenarioDocument, run: URL, file: URL)?
    private var budgetSpent = false

    public init(
        bundleDirectory: URL, bundle: ReplayBundle, original: RunOutcome, launcher: any RunLauncher,
        workDirectory: URL, options: ShrinkOptions, knownOperations: Set<String>,
        knownSinks: [PipelineSpec.KnownSink] = LoadScenario.backendSinks, logger: Logger,
        stop: @escaping () -> Bool = { false }
    ) {
        self.bundleDirectory = bundleDirectory
        self.bundle = bundle
        self.original = original
        self.launcher = launcher
        self.workDirectory = workDirectory
        self.options = options
        self.knownOperations = knownOperations
        self.knownSinks = knownSinks
        self.logger = logger
        self.stop = stop
    }

    var target: Set<AnomalySite>? {
        if let chosen = options.target { return chosen }
        return original.anomalies.isEmpty ? nil : Reproduction.required(original).sites
    }

    public func run() throws -> ShrinkResult {
        try FileManager.default.createDirectory(
            at: workDirectory.appendingPathComponent("candidates"), withIntermediateDirectories: true)
        // The baseline: the bundle's scenario with absolute paths to its copies and each fault event pinned.
        let scenarioFile = bundleDirectory.appendingPathComponent(bundle.scenario.file)
        var baseline = try ScenarioDocument(contentsOf: scenarioFile)
        if let stack = bundle.stack.file { baseline.setStack(bundleDirectory.appendingPathComponent(stack).path) }
        baseline.setSpec(bundleDirectory.appendingPathComponent(bundle.dataset.specFile).path)
        let parsed: LoadScenario
        do {
            parsed = try LoadScenario.load(
                contentsOf: scenarioFile, knownOperations: knownOperations, knownSinks: knownSinks)
        } catch {
            throw BundleError(file: scenarioFile.path, message: "\(error)")
        }
        if let faults = parsed.faults { baseline.pinFaultEvents(faults, seed: parsed.dataset.seed) }
        let originalFaults = baseline.faults.map { $0["name"]?.string ?? "?" }
        let originalRows = Self.rows(baseline)
        guard try evaluate(baseline, stage: .baseline, change: "the recorded bundle, fault events pinned", policy: .anyTry)
        else {
            return result(originalFaults: originalFaults, originalRows: originalRows)
        }
        try shrinkFaults()
        try shrinkRows()
        try shrinkPhases(.duration)
        try shrinkPhases(.rate)
        try shrinkMixes()
        return result(originalFaults: originalFaults, originalRows: originalRows)
    }

    func result(originalFaults: [String], originalRows: Int64?) -> ShrinkResult {
        ShrinkResult(
            steps: steps, minimalRun: best?.run, minimalScenario: best?.file,
            faultsKept: best.map { $0.document.faults.map { $0["name"]?.string ?? "?" } } ?? originalFaults,
            faultsOriginal: originalFaults, rowsKept: best.flatMap { Self.rows($0.document) }, rowsOriginal: originalRows,
            budgetSpent: budgetSpent, seconds: Date().timeIntervalSince(started))
    }

    // MARK: stages

    func shrinkFaults() throws {
        guard let current = best?.document, current.faults.count > 0 else { return }
        let events = current.faults
        let names = events.map { $0["name"]?.string ?? "?" }
        _ = try DeltaDebugging.minimize(Array(events.indices)) { kept in
            var candidate = current
            candidate.setFaults(kept.map { events[$0] })
            let removed = events.indices.filter { !kept.contains($0) }.map { names[$0] }
            return try evaluate(
                candidate, stage: .faults,
                change: "keep \(kept.count) of \(events.count) faults (\(kept.map { names[$0] }.joined(separator: ", "))); removed \(removed.joined(separator: ", "))",
                policy: .anyTry)
        }
    }

    func shrinkRows() throws {
        while let current = best?.document, let rows = Self.rows(current), rows >= 2 {
            var candidate = current
            let half = rows / 2
            candidate.setRows(half)
            for index in 0..<candidate.phaseCount {
                guard var phase = candidate.phase(index), phase["executor"]?.string == "bulk",
                    let bulk = phase["rows"]?.string.flatMap(CountSuffix.parse)
                else { continue }
                phase["rows"] = Node(String(max(1, min(Int64(bulk), half))))
                candidate.setPhase(index, phase)
            }
            guard try evaluate(candidate, stage: .rows, change: "dataset rows \(rows) -> \(half)", policy: .everyTry)
            else { return }
        }
    }

    func shrinkPhases(_ stage: ShrinkStage) throws {
        guard let phases = best?.document.phaseCount else { return }
        for index in 0..<phases {
            while let current = best?.document, var phase = current.phase(index) {
                let name = phase["name"]?.string ?? "#\(index)"
                var change: String?
                switch (stage, phase["executor"]?.string ?? "") {
                case (.duration, "constant-arrival-rate"), (.duration, "closed"):
                    guard let text = phase["duration"]?.string, let length = DurationText.parse(text) else { break }
                    let ms = ScenarioDocument.milliseconds(length)
                    guard ms >= 2000 else { break }
                    phase["duration"] = Node("\(ms / 2)ms")
                    change = "phase \(name) duration \(text) -> \(ms / 2)ms"
                case (.duration, "ramping-arrival-rate"):
                    guard var stages = phase["stages"]?.sequence.map(Array.init) else { break }
                    var changed = false
                    for stageIndex in stages.indices {
                        if let text = stages[stageIndex]["duration"]?.string, let length = DurationText.parse(text),
                            ScenarioDocument.milliseconds(length) >= 2000
                        {
                            stages[stageIndex]["duration"] = Node("\(ScenarioDocument.milliseconds(length) / 2)ms")
                            changed = true
                        }
                    }
                    guard changed else { break }
                    phase["stages"] = Node(stages)
                    change = "phase \(name) stage durations halved"
                case (.rate, "constant-arrival-rate"):
                    guard let rate = phase["rate"]?.string.flatMap(Double.init), rate >= 2 else { break }
                    phase["rate"] = Node(Self.number(rate / 2))
                    change = "phase \(name) rate \(Self.number(rate)) -> \(Self.number(rate / 2))/s"
                case (.rate, "ramping-arrival-rate"):
                    guard var stages = phase["stages"]?.sequence.map(Array.init),
                        let start = phase["start_rate"]?.string.flatMap(Double.init), start >= 2
                            || stages.contains(where: { ($0["target"]?.string.flatMap(Double.init) ?? 0) >= 2 })
                    else { break }
                    phase["start_rate"] = Node(Self.number(start / 2))
                    for stageIndex in stages.indices {
                        if let target = stages[stageIndex]["target"]?.string.flatMap(Double.init) {
                            stages[stageIndex]["target"] = Node(Self.number(target / 2))
                        }
                    }
                    phase["stages"] = Node(stages)
                    change = "phase \(name) rates halved"
                default: break
                }
                guard let change else { break }
                var candidate = current
                candidate.setPhase(index, phase)
                guard try evaluate(candidate, stage: stage, change: change, policy: .everyTry) else { break }
            }
        }
    }

    func shrinkMixes() throws {
        guard let phases = best?.document.phaseCount else { return }
        for index in 0..<phases {
            var position = 0
            while let current = best?.document, var phase = current.phase(index), case .mapping(let mix)? = phase["mix"],
                mix.count >= 2, position < mix.count
            {
                let removed = mix.map { $0.key.string ?? "?" }[position]
                phase["mix"] = .mapping(Node.Mapping(mix.filter { $0.key.string != removed }))
                var candidate = current
                candidate.setPhase(index, phase)
                let name = phase["name"]?.string ?? "#\(index)"
                if try !evaluate(candidate, stage: .mix, change: "phase \(name) without \(removed)", policy: .everyTry) {
                    position += 1
                }
            }
        }
    }

    // MARK: one candidate

    /// Replays `candidate` up to `tries` times and returns whether it reproduces under `policy`; when it does it
    /// becomes the best (minimal) candidate. Stops as soon as the answer is known (the first match for `.anyTry`,
    /// the first miss for `.everyTry`) or the budget is spent (then it does not count as reproducing).
    func evaluate(_ candidate: ScenarioDocument, stage: ShrinkStage, change: String, policy: AdoptionPolicy) throws
        -> Bool
    {
        let number = steps.count
        let file = workDirectory.appendingPathComponent("candidates/step-\(number).yaml")
        var step = ShrinkStep(number: number, stage: stage, change: change, tries: 0, reproduced: false, seconds: 0)
        let elapsed = Date().timeIntervalSince(started)
        if elapsed >= options.budgetSeconds || stop() {
            budgetSpent = budgetSpent || elapsed >= options.budgetSeconds
            step.skipped = true
            steps.append(step)
            logger.info("step \(number) \(stage.rawValue): \(change): skipped (budget spent or interrupted)")
            return false
        }
        try candidate.write(to: file)
        let stepStarted = Date()
        var matched = 0
        var missed = 0
        var matchedRun: URL?
        for attempt in 1...max(1, options.tries) {
            if stop() { break }
            step.tries = attempt
            let request = RunRequest(
                scenario: file, stack: options.stack, runsDirectory: workDirectory.appendingPathComponent("runs"),
                id: "step-\(number)-try-\(attempt)")
            let result = Replayer.attempt(
                number: attempt, request: request, launcher: launcher, original: original, target: target)
            step.run = result.directory.path
            logger.info(
                "step \(number) \(stage.rawValue): \(change): try \(attempt)/\(options.tries): \(result.reproduction.summary) (\(Int(result.seconds)) s)")
            if result.reproduction.matches {
                matched += 1
                matchedRun = matchedRun ?? result.directory
                if policy == .anyTry { break }
            } else {
                missed += 1
                if policy == .everyTry { break }
            }
            if Date().timeIntervalSince(started) >= options.budgetSeconds {
                budgetSpent = true
                break
            }
        }
        let complete = matched + missed == max(1, options.tries)
        let adopted = policy == .anyTry ? matched > 0 : (missed == 0 && complete)
        step.reproduced = adopted
        step.flaky = !adopted && matched > 0 && missed > 0
        step.unfinished = !adopted && missed == 0 && !complete
        if adopted, let matchedRun { best = (candidate, matchedRun, file) }
        step.seconds = Date().timeIntervalSince(stepStarted)
        steps.append(step)
        return adopted
    }

    static func rows(_ document: ScenarioDocument) -> Int64? {
        document.root["dataset"]?["rows"]?.string.flatMap(CountSuffix.parse).map(Int64.init)
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() ? String(Int64(value)) : String(format: "%.3f", value)
    }
}

extension ShrinkResult {
    /// The step table (Markdown).
    public var table: String {
        var lines = ["| step | stage | change | tries | reproduced | seconds |", "|---|---|---|---|---|---|"]
        for step in steps {
            let verdict = step.skipped
                ? "skipped (budget)"
                : step.flaky ? "flaky: not in every try, not adopted"
                : step.unfinished ? "not adopted: the budget ended it after \(step.tries) of the tries (each reproduced)"
                : (step.reproduced ? "yes" : "no")
            lines.append(
                "| \(step.number) | \(step.stage.rawValue) | \(step.change.replacingOccurrences(of: "|", with: "/")) | \(step.tries) | \(verdict) | \(Int(step.seconds)) |")
        }
        return lines.joined(separator: "\n")
    }
}
