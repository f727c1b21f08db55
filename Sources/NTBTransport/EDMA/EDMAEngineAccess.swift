public import DWEDMA
public import NTBHardware
import PCIKit

/// Opening the eDMA of a port for the `edma` backend, generically over any device with the
/// ``PeerEDMAAccess`` capability (hardware-reference §4.3 "Init order": the endpoint starts its engine and
/// publishes the window before link-up; the host probes the window and opens the peer's engine after
/// the handshake).
public enum EDMAEngineAccess {
    /// Endpoint, before link-up: starts the local engine with the locator's channel counts (data write
    /// channels; data + notify read channels), opens it in local mode, and publishes the eDMA window.
    /// - Parameter registerSize: R of the window layout (a power of two; the eDMA block rounded up).
    public static func publish<Device: PeerEDMAAccess>(
        _ device: Device, locator: EDMALocator, registerSize: Int
    ) throws(TransportError) -> (published: EDMAPeerWindow.Published, controller: DWEDMAController<Device.EDMARegisterSpace>) {
        let registers: Device.EDMARegisterSpace
        do throws(NTBError) {
            registers = try device.localEDMARegisters(writeChannels: locator.dataChannels, readChannels: locator.publishedChannelCount)
        } catch { throw .device(error) }
        let controller = try open(registers, mode: .local, on: device)
        guard controller.writeChannels >= locator.dataChannels else {
            throw .invalidConfiguration("the eDMA of \(device.name) has \(controller.writeChannels) write channels; the policy asks for \(locator.dataChannels) data channels (set channels= to at most \(controller.writeChannels))")
        }
        do throws(NTBError) {
            return (try EDMAPeerWindow.publish(device, locator: locator, registerSize: registerSize), controller)
        } catch { throw .device(error) }
    }

    /// Host, after the handshake: validates the info the peer published (``EDMAPeerWindow/probe(_:locator:peerWindowBase:)``)
    /// unless `validated` holds what a probe already found, and opens the peer's engine in remote mode;
    /// the engine must have the read channels the info announces.
    public static func connect<Device: PeerEDMAAccess>(
        _ device: Device, locator: EDMALocator, validated: ValidatedEDMAWindow? = nil, peerWindowBase: UInt64? = nil
    ) throws(TransportError) -> (window: ValidatedEDMAWindow, controller: DWEDMAController<Device.EDMARegisterSpace>) {
        let window: ValidatedEDMAWindow
        if let validated {
            window = validated
        } else {
            switch EDMAPeerWindow.probe(device, locator: locator, peerWindowBase: peerWindowBase) {
            case let .success(w): window = w
            case let .failure(error): throw .device(.unsupported("\(device.name): \(error)"))
            }
        }
        let registers: Device.EDMARegisterSpace
        do throws(NTBError) { registers = try device.peerEDMARegisters() } catch { throw .device(error) }
        let controller = try open(registers, mode: .remote, on: device)
        guard controller.readChannels >= window.info.channelCount else {
            throw .device(.unsupported("\(device.name): the peer published \(window.info.channelCount) read channels but its eDMA has \(controller.readChannels); the peer's window and engine disagree (restart the peer)"))
        }
        return (window, controller)
    }

    private static func open<Space: RegisterSpace, Device: NTBDevice>(
        _ registers: Space, mode: EDMAMode, on device: Device
    ) throws(TransportError) -> DWEDMAController<Space> {
        do throws(EDMAError) {
            return try DWEDMAController(registers: registers, mode: mode, ownership: .channels)
        } catch {
            throw .edma(device: device.name, error)
        }
    }
}
