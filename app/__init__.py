"""The Streamlit web UI over a clipsearch index: `clipsearch ui`, or `streamlit run app/main.py`.

Like the CLI it sits on top of the library: it imports `clipsearch`, never the reverse.
"""
