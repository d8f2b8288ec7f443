import Foundation
import KilnCheck
import KilnElle
import KilnReport
import Testing
import KilnTestSupport

/// `elle.list-append` as a place of `kiln check`: a run directory holding a list-append history is checked against
/// the model its store promised, the result lands in check.json with each anomaly's witness, and summary.md and
/// report.html explain each witness (report.html with an inline SVG of the cycle).
@Suite struct ElleRunDirectoryTests {
    /// check.json as `kiln check` writes it (snake case), read back as the report writers read it.
    static func roundTrip(_ place: PlaceResult) throws -> CheckReport {
        let report = CheckReport(run: "elle", datasetRows: 0, places: [], validity: .valid, seconds: 0).adding(place)
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(CheckReport.self, from: encoder.encode(report))
    }

    @Test func aWriteSkewIsInvalidUnderSerializableWithItsWitnessInCheckJSON() throws {
        let directory = try ElleRunFixture.directory(ElleListAppendTests.g2Item)
        #expect(ListAppendPlace.present(in: directory))
        let place = ListAppendPlace.check(directory: directory)
        #expect(place.place == "elle.list-append")
        #expect(place.validity == .invalid)
        #expect(place.counts["G2-item"] == 1)
        let decoded = try Self.roundTrip(place)
        #expect(decoded.validity == .invalid)
        let findings = try #require(decoded.places.first?.transactional)
        #expect(findings.model == "serializable")
        #expect(findings.forbiddenFound.contains("G2-item"))
        let witness = try #require(findings.witnesses.first { $0.kind == .g2Item })
        #expect(witness.steps.count >= 2)
        #expect(witness.steps.filter { $0.relation == .rw }.count >= 2)
        #expect(witness.steps.allSatisfy { !$0.why.isEmpty })
        #expect(witness.transactions.count >= 2)
    }

    @Test func theSameHistoryIsValidUnderTheModelThatAllowsIt() throws {
        let directory = try ElleRunFixture.directory(ElleListAppendTests.g2Item, model: .snapshotIsolation)
        let place = ListAppendPlace.check(directory: directory)
        #expect(place.validity == .valid)
        // Found and reported, but allowed by snapshot isolation.
        #expect(place.counts["G2-item"] == 1)
        #expect(place.transactional?.forbiddenFound.isEmpty == true)
    }

    @Test func anUnreadableHistoryOrAMissingDescriptionIsUnknownNeverValid() throws {
        let missing = try ElleRunFixture.directory(ElleListAppendTests.g2Item, description: false)
        let noDescription = ListAppendPlace.check(directory: missing)
        #expect(noDescription.validity == .unknown)
        #expect(noDescription.error != nil)
        let garbled = try ElleRunFixture.directory([])
        try Data("{\"process\": 1, \"ops\": [[\"bogus\"]]}\n".utf8).write(
            to: garbled.appendingPathComponent(ListAppendRunDescription.historyFileName))
        #expect(ListAppendPlace.check(directory: garbled).validity == .unknown)
        let twice = try ElleRunFixture.directory(
            ElleListAppendTests.concurrent([
                ElleListAppendTests.txn(ElleListAppendTests.append(1, 1)),
                ElleListAppendTests.txn(ElleListAppendTests.append(1, 1)),
            ]))
        let unknown = ListAppendPlace.check(directory: twice)
        #expect(unknown.validity == .unknown)
        #expect(unknown.error?.contains("appended twice") == true)
    }

    @Test func aSearchOutOfTimeIsUnknown() throws {
        let directory = try ElleRunFixture.directory(ElleListAppendTests.g2Item)
        let place = ListAppendPlace.check(directory: directory, searchTimeLimit: .zero)
        #expect(place.validity == .unknown)
        #expect(place.error?.contains("timed out") == true, "\(place.error ?? "")")
    }

    @Test func summaryAndHTMLExplainEachWitnessWithAnInlineCycle() throws {
        let directory = try ElleRunFixture.directory(ElleListAppendTests.gSingle)
        let check = try Self.roundTrip(ListAppendPlace.check(directory: directory))
        let run = RunData(directory: directory, report: nil, timeline: [], check: check)
        let written = try ReportWriters.writeAll(run)
        #expect(written.count >= 2)
        let summary = try String(contentsOf: directory.appendingPathComponent("summary.md"), encoding: .utf8)
        #expect(summary.contains("elle.list-append"))
        #expect(summary.contains("**G-single** (forbidden by serializable)"), "\(summary)")
        #expect(summary.contains("-rw->"), "\(summary)")
        #expect(summary.contains("-wr->") || summary.contains("-ww->"), "\(summary)")
        let html = try String(contentsOf: directory.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(html.contains("<svg class=\"cycle\""))
        #expect(html.contains("marker-end=\"url(#cycle1-rw)\""))
        #expect(html.contains("<ol class=\"edges\">"))
        // Self-contained: no scripts, stylesheets or images fetched from anywhere.
        #expect(!html.contains("<script"))
        #expect(!html.contains("src=\"http"))
        #expect(!html.contains("href=\"http"))
    }
}
