// The Streamlit custom-component protocol (v1), by hand: four postMessage types. The official
// streamlit-component-lib pulls in React and Arrow (~600 kB) for what these lines do.

const API_VERSION = 1;

function send(type, data = {}) {
  window.parent.postMessage({ isStreamlitMessage: true, type, ...data }, "*");
}

/** Tell Streamlit the iframe is ready; `onRender(args)` is called on every render message. */
export function connect(onRender) {
  window.addEventListener("message", (event) => {
    if (event.data && event.data.type === "streamlit:render") {
      onRender(event.data.args || {});
    }
  });
  send("streamlit:componentReady", { apiVersion: API_VERSION });
}

/** Fix the iframe's height in CSS pixels. */
export function setFrameHeight(height) {
  send("streamlit:setFrameHeight", { height });
}

/** Send a JSON value back to Python (this reruns the script: use for rare reader choices only). */
export function setComponentValue(value) {
  send("streamlit:setComponentValue", { value, dataType: "json" });
}
