@testable import KilnLoad
import Testing

/// The multiplexing loop keeps each connection registered in epoll across ops (level-triggered) and registers again
/// only when the connection behind a slot may have changed: no server needed, the rule is pure bookkeeping.
@Suite("Epoll registrations of the multiplexing loop")
struct EpollRegistrationsTests {
    @Test func aSlotRegistersOnceWhileItsOpsEndOk() {
        var registrations = EpollRegistrations(count: 2)
        #expect(registrations.needsRegistration(0, 7))
        registrations.registered(0, 7)
        for _ in 0..<3 {
            registrations.opEnded(0, ok: true)
            #expect(!registrations.needsRegistration(0, 7))
        }
        // Another slot is independent.
        #expect(registrations.needsRegistration(1, 8))
    }

    @Test func anOpThatDidNotEndOkMakesTheSlotRegisterAgainEvenUnderTheSameNumber() {
        // A failed op may have closed the connection (which leaves epoll by itself); the next connection can get
        // the same descriptor number, a new open file that epoll does not watch.
        var registrations = EpollRegistrations(count: 1)
        registrations.registered(0, 7)
        registrations.opEnded(0, ok: false)
        #expect(registrations.needsRegistration(0, 7))
    }

    @Test func aNewDescriptorOrAForgottenSlotRegistersAgain() {
        var registrations = EpollRegistrations(count: 1)
        registrations.registered(0, 7)
        #expect(registrations.needsRegistration(0, 9))
        registrations.forget(0)
        #expect(registrations.needsRegistration(0, 7))
    }
}
