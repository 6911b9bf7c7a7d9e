// Node's "events", reached only through vtk.js's XML writer, which the viewer never calls.
class EventEmitter {
  on() { return this; }
  off() { return this; }
  emit() { return false; }
}
module.exports = EventEmitter;
module.exports.EventEmitter = EventEmitter;
