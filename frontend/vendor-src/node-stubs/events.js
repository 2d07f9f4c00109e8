// Node's "events": xmlbuilder2 (pulled in by vtk.js) extends EventEmitter at load
// time; the viewer never uses that class, so a minimal one stands in.
class EventEmitter {
  on() { return this; }
  once() { return this; }
  off() { return this; }
  emit() { return false; }
  removeListener() { return this; }
}
module.exports = { EventEmitter, default: EventEmitter };
